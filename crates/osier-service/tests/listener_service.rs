//! A notification listener run as a service: start, health, stop, wait through the `Service`
//! contract, as a launcher drives it.

use osier_messaging::{
    NotificationEndpoint, NotificationListener, NotificationResult, Priority, Target, Transport,
};
use osier_service::Service;

#[test]
fn a_listener_is_a_service_with_health() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let t = Transport::new("memory://").unwrap();
        let ep =
            NotificationEndpoint::new("e").on(Priority::Info, |_n| NotificationResult::Handled);
        let l = NotificationListener::new(&t, vec![Target::topic("svc-listener")], vec![ep]);
        assert!(Service::health(&l).is_err(), "not started");
        Service::start(&l).await.unwrap();
        assert_eq!(Service::health(&l), Ok(()));
        let waiting = {
            let l = &l;
            async move { Service::wait(l).await }
        };
        let (w, s) = tokio::join!(waiting, Service::stop(&l, true));
        w.unwrap();
        s.unwrap();
        assert_eq!(
            Service::health(&l).unwrap_err(),
            "notification listener: not running"
        );
    });
}
