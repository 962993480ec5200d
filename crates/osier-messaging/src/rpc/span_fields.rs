//! The strings the `rpc.call`, `rpc.cast` and `rpc.server` spans record. They are recorded as
//! `&str` fields, which a log formatter copies, where a `Display` field would run the
//! formatting machinery once per field and per request; values that may have come off the
//! wire are escaped and cut first ([`Untrusted::shown`]).

use std::borrow::Cow;
use std::cell::OnceCell;

use crate::context::RequestContext;
use crate::untrusted::Untrusted;

/// The strings a client or server span records, as `&str` fields (a log formatter copies a
/// string where it would run `Display`): the method and the request ids, escaped and cut when
/// they are not plain (they may have come off the wire).
pub(crate) struct SpanFields<'a> {
    pub(crate) method: Cow<'a, str>,
    pub(crate) request_id: Cow<'a, str>,
    pub(crate) global_request_id: Cow<'a, str>,
}

impl<'a> SpanFields<'a> {
    pub(crate) fn of(ctx: &'a RequestContext, method: &'a str) -> Self {
        SpanFields {
            method: Untrusted(method).shown(),
            request_id: Untrusted(ctx.request_id().unwrap_or("")).shown(),
            global_request_id: Untrusted(ctx.global_request_id().unwrap_or("")).shown(),
        }
    }
}

/// [`SpanFields`] made on first use. A span evaluates its field values only when it is
/// enabled, so a request whose span is off escapes and cuts nothing.
pub(crate) struct LazyFields<'a> {
    ctx: &'a RequestContext,
    method: &'a str,
    made: OnceCell<SpanFields<'a>>,
}

impl<'a> LazyFields<'a> {
    pub(crate) fn new(ctx: &'a RequestContext, method: &'a str) -> Self {
        LazyFields {
            ctx,
            method,
            made: OnceCell::new(),
        }
    }

    pub(crate) fn get(&self) -> &SpanFields<'a> {
        self.made
            .get_or_init(|| SpanFields::of(self.ctx, self.method))
    }
}
