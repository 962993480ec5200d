//! Every stage answers every query exactly, on each transport and database: the load
//! generator's checks (statistics and samples of every series it sent) are the assertions.

mod common;

use common::{memory, postgres, rabbit_url, run, TempDb};
use osier_demo::stage::Stage;
use osier_messaging::Transport;

fn assert_checked(
    stage: &[Stage],
    r: Result<osier_demo::load::LoadReport, osier_demo::load::LoadError>,
) {
    let r = r.unwrap_or_else(|e| panic!("{stage:?}: {e}"));
    assert!(r.samples > 0, "{stage:?} stored nothing");
    assert_eq!(r.checked, 5 * osier_demo::load::COUNTERS.len(), "{stage:?}");
    assert!(
        !r.query_latencies.is_empty(),
        "{stage:?} answered no query while loaded"
    );
}

#[test]
fn every_stage_answers_alike_in_memory_on_sqlite() {
    for stage in Stage::ALL {
        let db = TempDb::new();
        assert_checked(&[stage], run(&[stage], &memory(), &db.0));
    }
}

#[test]
fn every_stage_answers_alike_in_memory_on_postgres_when_reachable() {
    let Some(db) = postgres() else { return };
    for stage in Stage::ALL {
        assert_checked(&[stage], run(&[stage], &memory(), &db));
    }
}

/// One test for every RabbitMQ run: the demo's queues are named after its topics, so two
/// runs at once on one broker would share them.
#[test]
fn every_stage_answers_alike_on_rabbitmq() {
    // A transport per run: its connections' tasks live on the runtime of the run that first
    // used it, which ends with the run.
    let transport = || Transport::new(&rabbit_url()).expect("a rabbit:// transport");
    for stage in Stage::ALL {
        let db = TempDb::new();
        assert_checked(&[stage], run(&[stage], &transport(), &db.0));
    }
    if let Some(pg) = postgres() {
        assert_checked(
            &[Stage::AsyncMain],
            run(&[Stage::AsyncMain], &transport(), &pg),
        );
    }
}

/// A fleet mid-migration: a stage-0 and a stage-3 service on the same topic and database;
/// the answers do not change.
#[test]
fn mixed_stages_answer_alike() {
    let db = TempDb::new();
    let stages = [Stage::AllGreen, Stage::AsyncMain];
    assert_checked(&stages, run(&stages, &memory(), &db.0));
}
