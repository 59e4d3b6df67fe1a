//! The generated tenant's inventory (issue 28): thirty days of generated traffic, the
//! inventory files `tokentrail generate` writes read back by `--from-file`'s reader and
//! stored as a snapshot at the start of the history, and the access review and the key
//! exposure giving the recommendations the generator put in on purpose.

use crate::common::{self, TestDb};

use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;
use tokentrail::inventory::{files, history};
use tokentrail::rules::{DetectionConfig, Detector};
use tokentrail::synth::{Generator, Habit, Profile, Tenant};

const DAYS: i64 = 30;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn the_generated_inventory_gives_the_access_review_its_recommendations() {
    review_of(Profile::Tidy);
}

#[test]
fn the_demo_tenant_gives_the_access_review_its_recommendations() {
    review_of(Profile::Realistic);
}

fn review_of(profile: Profile) {
    let seed = 42;
    let db = TestDb::new();
    let from = at("2026-09-07T00:00:00Z");
    let to = from + Duration::days(DAYS);
    let generator = Generator::new(Tenant::new(seed), seed).with_profile(profile);
    let (events, _) = generator.history(from, to, &[]);
    let path = db.dir.path().join("history.ndjson");
    common::write_ndjson(&path, &events);
    let report = db.ingest(&[path]);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let (detector, problems) = Detector::open(&db.store, &DetectionConfig::default()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let evaluation = detector.evaluate_after_commit(&db.store).unwrap();
    assert!(evaluation.failures.is_empty(), "{:?}", evaluation.failures);

    // the files as `tokentrail generate` writes them, read by `inventory --from-file`'s reader
    let inventory = generator.inventory();
    let written = inventory.write(&db.dir.path().join("inventory")).unwrap();
    let snapshot = files::read(&written, from).unwrap();
    assert_eq!(snapshot.accounts.len(), generator.tenant().accounts.len());
    history::record(&db.store, &snapshot).unwrap();

    // a period the logs cover from its first day, the whole assignment history before it
    let since = from + Duration::days(1);
    let review = db.rows(&format!(
        "SELECT principal_id, assignment_id, recommendation, requests::VARCHAR, advice, origin
         FROM access_review('{}'::TIMESTAMPTZ, '{}'::TIMESTAMPTZ) ORDER BY assignment_id",
        since.to_rfc3339(),
        to.to_rfc3339()
    ));
    let by_assignment: BTreeMap<&str, &Vec<String>> = review.iter().map(|r| (r[1].as_str(), r)).collect();
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    for g in &inventory.over_grants {
        let row = by_assignment
            .get(g.assignment_id.as_str())
            .unwrap_or_else(|| panic!("{} ({}) not in the review: {review:#?}", g.name, g.assignment_id));
        assert_eq!(row[0], g.principal_id);
        assert_eq!(row[2], g.recommendation, "{} on {}: {row:?}", g.name, g.account);
        *expected.entry(g.recommendation).or_default() += 1;
    }
    for recommendation in ["reader", "narrow scope", "remove", "group"] {
        assert!(expected.get(recommendation).copied().unwrap_or(0) >= 1, "no over-grant for {recommendation}");
    }
    // everyone else uses what they hold
    let over: Vec<&str> = inventory.over_grants.iter().map(|g| g.assignment_id.as_str()).collect();
    // (the realistic tenant's new hires are granted in the Activity log, after the snapshot)
    let others: Vec<&&Vec<String>> =
        by_assignment.iter().filter(|(id, r)| !over.contains(id) && r[5] == "inventory").map(|(_, r)| r).collect();
    let kept = others.iter().filter(|r| r[2] == "keep").count();
    // the dormant principal and a leaver hold what they no longer use
    let dormant: Vec<String> = generator
        .tenant()
        .principals()
        .filter(|p| p.dormant || p.habit == Habit::Leaver)
        .map(|p| p.object_id.to_ascii_lowercase())
        .collect();
    let not_kept: Vec<&&&Vec<String>> = others.iter().filter(|r| r[2] != "keep").collect();
    assert!(kept >= 30, "{profile}: {kept} of {} kept: {not_kept:#?}", others.len());
    for r in &not_kept {
        assert!(
            dormant.contains(&r[0]) && r[2] == "remove",
            "only the dormant principal's and a leaver's are to go: {r:?}"
        );
    }
    let grant_ids: Vec<String> = generator
        .tenant()
        .principals()
        .flat_map(|p| p.grants.iter().map(|g| g.role_assignment_id.to_ascii_lowercase()))
        .collect();
    let extra: Vec<&&&Vec<String>> =
        others.iter().filter(|r| !grant_ids.iter().any(|g| r[1].ends_with(g.as_str()))).collect();
    assert!(extra.is_empty(), "{extra:#?}");
    // one assignment per grant: the over-granted readers' and narrow ones' are grants too
    let broadened = inventory.over_grants.iter().filter(|g| ["reader", "narrow scope"].contains(&g.recommendation));
    assert_eq!(
        others.len() + broadened.count(),
        generator.tenant().principals().map(|p| p.grants.len()).sum::<usize>(),
        "one assignment per grant"
    );

    // the key client's account: its keys in use, and who may read them
    let tenant = generator.tenant();
    let key_account = &tenant.accounts[tenant.key_client.account].name;
    let exposure = db.rows(&format!(
        "SELECT account, key_clients::VARCHAR, key_readers::VARCHAR FROM key_exposure('{}'::TIMESTAMPTZ, '{}'::TIMESTAMPTZ)",
        since.to_rfc3339(),
        to.to_rfc3339()
    ));
    let row = exposure.iter().find(|r| &r[0] == key_account).unwrap_or_else(|| panic!("{exposure:?}"));
    assert!(row[1].parse::<i64>().unwrap() >= 1, "{row:?}");
    let rotation = generator.key_rotation_identity().object_id.to_ascii_lowercase();
    assert!(row[2].contains(&format!("{rotation} (DocumentDB Account Contributor)")), "{row:?}");
    let analysts: Vec<&(String, &str)> =
        inventory.key_readers.iter().filter(|(_, role)| *role == "Cosmos DB Account Reader Role").collect();
    assert_eq!(analysts.len(), 1, "{:?}", inventory.key_readers);
    assert!(row[2].contains(&format!("{} (Cosmos DB Account Reader Role)", analysts[0].0)), "{row:?}");
    for (id, role) in &inventory.key_readers {
        assert!(row[2].contains(&format!("{id} ({role})")), "{id} {role}: {row:?}");
    }
    // an account with local auth off is not exposed
    let disabled = db.rows("SELECT account FROM cosmos_accounts WHERE valid_to IS NULL AND disable_local_auth");
    for a in disabled {
        assert!(exposure.iter().all(|r| r[0] != a[0]), "{a:?} in {exposure:?}");
    }
}
