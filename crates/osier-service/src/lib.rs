//! # osier-service
//!
//! oslo.service's model in Rust (`behaviour.md` part D, SVC-*), for green and async services
//! alike. This first part holds the looping calls ([`looping`], SVC-LOOP-*): fixed interval with
//! drift correction, fixed interval with timeout, dynamic, back-off with oslo's exact series, a
//! retry helper, and "done" with a value; `stop()` wakes a sleeping loop at once; and systemd
//! readiness notification ([`systemd`], SVC-SYSD-01). Services, launchers, signals, task groups
//! and periodic tasks are issue 6's next steps.
//!
//! | oslo.service | osier-service |
//! |---|---|
//! | `loopingcall.FixedIntervalLoopingCall(f).start(interval=1)` | [`looping::LoopingCall::fixed_interval`]`(1 s).start(f)` |
//! | `loopingcall.DynamicLoopingCall(f).start(periodic_interval_max=60)` | [`looping::LoopingCall::dynamic`]`().periodic_interval_max(60 s).start(f)` |
//! | `loopingcall.BackOffLoopingCall(f).start(...)` | [`looping::LoopingCall::backoff`]`()...start(f)` |
//! | `loopingcall.RetryDecorator(...)` | [`looping::Retry`] |
//!
//! Green code uses them through the bridge: start the loop on the bridge's tokio runtime and
//! `yield_future(handle.wait())` from a green thread.
#![warn(missing_docs)]

pub mod looping;
pub mod systemd;
