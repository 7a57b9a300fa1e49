//! When commands complete: latency on a virtual clock, due commands taken out of the
//! middle of those in flight, the discrete-event clock.

use crate::common::*;

#[test]
fn latency_is_respected_on_a_virtual_clock() {
    let (clock, mut qp) = timed_qpair(10_000, 1, 4);
    for tag in 0..3 {
        qp.submit(tag, Command::Flush).unwrap();
    }
    let mut done = Vec::new();
    assert_eq!(
        qp.poll(8, &mut |c| done.push(c.tag)),
        0,
        "nothing before its time"
    );
    clock.advance(9_999);
    assert_eq!(qp.poll(8, &mut |c| done.push(c.tag)), 0);
    clock.advance(1);
    assert_eq!(
        qp.poll(8, &mut |c| done.push(c.tag)),
        1,
        "one channel: one at 10us"
    );
    clock.advance(10_000);
    assert_eq!(qp.poll(8, &mut |c| done.push(c.tag)), 1);
    assert_eq!(qp.next_completion_ns(), Some(30_000));
    clock.advance(10_000);
    qp.poll(8, &mut |c| done.push(c.tag));
    done.sort();
    assert_eq!(done, vec![0, 1, 2]);
}

/// Commands complete by their own due time, whatever their slot or the order around
/// them: a poll takes due ones out of the middle of those in flight, honours `max`, and
/// reuses freed slots while the rest stay in flight.
#[test]
fn polls_complete_due_commands_out_of_the_middle_and_honour_max() {
    let (clock, mut qp) = timed_qpair(10_000, 8, 4);
    let mut done = Vec::new();
    // Tag 0 is due at 10 us, tag 1 at 15 us, tag 3 at 17 us.
    qp.submit(0, Command::Flush).unwrap();
    clock.advance(5_000);
    qp.submit(1, Command::Flush).unwrap();
    clock.advance(2_000); // 7 us
    qp.submit(3, Command::Flush).unwrap();
    assert_eq!(qp.next_completion_ns(), Some(10_000));
    clock.advance(3_000); // 10 us
    assert_eq!(qp.poll(8, &mut |c| done.push(c.tag)), 1);
    assert_eq!(done, vec![0]);
    // The freed slot is reused while 1 and 3 are in flight.
    qp.submit(4, Command::Flush).unwrap(); // due at 20 us
    qp.submit(5, Command::Flush).unwrap(); // due at 20 us
    assert_eq!(qp.in_flight(), 4);
    clock.advance(7_000); // 17 us: 1 (15) and 3 (17) are due, 4 and 5 are not
    assert_eq!(qp.poll(1, &mut |c| done.push(c.tag)), 1, "max is honoured");
    assert_eq!(qp.poll(8, &mut |c| done.push(c.tag)), 1);
    assert_eq!(done, vec![0, 1, 3], "due ones in submission order");
    assert_eq!(qp.next_completion_ns(), Some(20_000));
    clock.advance(3_000);
    assert_eq!(qp.poll(8, &mut |c| done.push(c.tag)), 2);
    assert_eq!(done, vec![0, 1, 3, 4, 5]);
    assert_eq!(qp.in_flight(), 0);
    assert_eq!(qp.poll(8, &mut |c| done.push(c.tag)), 0);
}

#[test]
fn discrete_clock_jumps_to_the_next_completion() {
    let mut c = cfg(16);
    let clock = SimClock::discrete();
    c.clock = clock.clone();
    c.latency_ns = 7_000;
    c.parallelism = 1;
    let dev = SimDevice::new(c).unwrap();
    let mut qp = dev.open_qpair(&QpairOptions::depth(4)).unwrap();
    qp.submit(1, Command::Flush).unwrap();
    qp.submit(2, Command::Flush).unwrap();
    let mut done = Vec::new();
    assert_eq!(qp.poll(1, &mut |c| done.push(c.tag)), 1);
    assert_eq!(
        clock.now_ns(),
        7_000,
        "jumped to the first completion, no further"
    );
    assert_eq!(qp.poll(4, &mut |c| done.push(c.tag)), 1);
    assert_eq!(clock.now_ns(), 14_000);
    assert_eq!(
        qp.poll(4, &mut |_| {}),
        0,
        "nothing in flight: time stands still"
    );
    assert_eq!(clock.now_ns(), 14_000);
    assert_eq!(done, vec![1, 2]);
}
