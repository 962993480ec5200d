//! Queues (GREEN-20, GREEN-21, TEST-GREEN-10).

use std::time::{Duration, Instant};

use osier_green::{
    sleep, spawn, Empty, Full, LifoQueue, LightQueue, PriorityQueue, Queue, Runtime, TaskDoneError,
};

fn green<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    Runtime::global().block_on(f).expect("test body failed")
}

/// GREEN-20 / TEST-GREEN-10: maxsize 0 is a rendezvous: put blocks until a getter takes it.
#[test]
fn zero_maxsize_put_blocks_until_get() {
    green(|| {
        let q: Queue<u8> = Queue::new(Some(0));
        assert!(q.is_full());
        assert!(matches!(q.try_put(1), Err(Full(1))));
        let q2 = q.clone();
        let putter = spawn(move || {
            let t0 = Instant::now();
            q2.put(7);
            t0.elapsed()
        });
        sleep(Duration::from_millis(20));
        assert!(!putter.is_finished(), "put waits for a getter");
        assert_eq!(q.get(), 7);
        assert!(putter.wait().unwrap() >= Duration::from_millis(20));
    });
}

/// TEST-GREEN-10: get with a timeout on an empty queue raises Empty; put with a timeout on a full
/// queue raises Full (with the item back); the non-blocking forms fail at once.
#[test]
fn timeouts_and_nowait_forms_fail_as_eventlet() {
    green(|| {
        let q: Queue<u8> = Queue::new(Some(1));
        assert_eq!(q.get_timeout(Duration::from_millis(5)), Err(Empty));
        assert_eq!(q.try_get(), Err(Empty));
        q.put(1);
        assert!(q.is_full());
        assert!(matches!(
            q.put_timeout(2, Duration::from_millis(5)),
            Err(Full(2))
        ));
        assert!(matches!(q.try_put(3), Err(Full(3))));
        assert_eq!(q.qsize(), 1);
    });
}

/// TEST-GREEN-10: after a getter times out the queue still works, and a getter that dies does
/// not swallow an item meant for another waiter.
#[test]
fn dead_getter_does_not_swallow_item() {
    green(|| {
        let q: Queue<u8> = Queue::unbounded();
        assert_eq!(q.get_timeout(Duration::from_millis(2)), Err(Empty));
        q.put(1);
        assert_eq!(q.get(), 1);

        let (a, b) = (q.clone(), q.clone());
        let first = spawn(move || a.get());
        let second = spawn(move || b.get());
        sleep(Duration::ZERO);
        assert_eq!(q.getting(), 2);
        q.put(42); // wakes `first`
        first.kill(); // which dies before it runs
        assert_eq!(second.wait_timeout(Duration::from_secs(2)), Some(Ok(42)));
    });
}

/// TEST-GREEN-10: resizing up wakes blocked putters.
#[test]
fn resize_up_wakes_putters() {
    green(|| {
        let q: Queue<u8> = Queue::new(Some(1));
        q.put(0);
        let q2 = q.clone();
        let putter = spawn(move || q2.put(1));
        sleep(Duration::ZERO);
        assert_eq!(q.putting(), 1);
        q.resize(Some(2));
        putter.wait().unwrap();
        assert_eq!(q.qsize(), 2);
        q.resize(None);
        assert!(!q.is_full(), "an unbounded queue is never full");
        assert_eq!(q.maxsize(), None);
    });
}

/// GREEN-21 / TEST-GREEN-10: an extra task_done is refused; join on a drained queue returns;
/// join waits for outstanding task_done calls.
#[test]
fn task_done_and_join() {
    green(|| {
        let q: Queue<u8> = Queue::unbounded();
        assert_eq!(q.task_done(), Err(TaskDoneError));
        q.join(); // nothing outstanding
        q.put(1);
        q.put(2);
        let q2 = q.clone();
        let worker = spawn(move || {
            for _ in 0..2 {
                let _ = q2.get();
                sleep(Duration::from_millis(5));
                q2.task_done().unwrap();
            }
        });
        let t0 = Instant::now();
        q.join();
        assert!(t0.elapsed() >= Duration::from_millis(10));
        assert_eq!(q.unfinished_tasks(), 0);
        worker.wait().unwrap();
    });
}

/// GREEN-21: PriorityQueue pops the smallest first, LifoQueue the newest first.
#[test]
fn priority_and_lifo_orders() {
    let p: PriorityQueue<(u8, &str)> = PriorityQueue::unbounded();
    for x in [(3, "c"), (1, "a"), (2, "b")] {
        p.put(x);
    }
    assert_eq!([p.get(), p.get(), p.get()], [(1, "a"), (2, "b"), (3, "c")]);
    let l: LifoQueue<u8> = LifoQueue::unbounded();
    for x in 1..=3 {
        l.put(x);
    }
    assert_eq!([l.get(), l.get(), l.get()], [3, 2, 1]);
    let light: LightQueue<u8> = LightQueue::new(None);
    light.put(9);
    assert_eq!(light.get(), 9);
}

/// A bounded queue parks the putter while full and wakes it on get.
#[test]
fn bounded_put_parks_until_get() {
    green(|| {
        let q: Queue<u32> = Queue::new(Some(2));
        let q2 = q.clone();
        let producer = spawn(move || {
            for i in 0..10 {
                q2.put(i);
            }
        });
        let mut got = Vec::new();
        for _ in 0..10 {
            got.push(q.get());
            assert!(q.qsize() <= 2);
        }
        producer.wait().unwrap();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    });
}

/// Queues work between plain OS threads and green threads.
#[test]
fn os_thread_and_green_thread_share_a_queue() {
    let q: Queue<u32> = Queue::new(Some(1));
    let q2 = q.clone();
    let consumer = spawn(move || (0..100).map(|_| q2.get()).sum::<u32>());
    for i in 0..100 {
        q.put(i);
    }
    assert_eq!(consumer.wait(), Ok((0..100).sum()));
}
