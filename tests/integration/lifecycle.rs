//! Lifecycle stages and the decision path between two runs, on hand-made data whose stages are
//! known.

use crate::common::*;

fn lifecycle_job(dir: &std::path::Path) -> std::path::PathBuf {
    write(
        &dir.join("in/users.csv"),
        "user_id\nu1\nu2\nu3\nu4\nu5\nu6\nu7\n",
    );
    write(
        &dir.join("in/orders.csv"),
        "user_id,ts,brand,amount
u1,2026-11-01T10:00:00,B01,20.0
u1,2026-11-03T10:00:00,B01,25.0
u2,2026-11-02T10:00:00,B01,15.0
u6,2026-11-02T10:00:00,B01,15.0
u6,2026-11-04T10:00:00,B01,15.0
u7,2026-11-04T10:00:00,B02,15.0
u5,2026-11-04T10:00:00,B01,-15.0
u3,2026-11-15T10:00:00,B01,30.0
",
    );
    write(
        &dir.join("in/social_events.csv"),
        "user_id,ts,action,brand,referrer_id
u1,2026-11-05T10:00:00,share,B01,
u3,2026-11-05T10:00:00,like,B01,
u4,2026-11-05T10:00:00,ad_impression,B01,
u7,2026-11-05T10:00:00,article_read,B01,u6
u4,2026-11-16T10:00:00,ad_click,B01,
u5,2026-11-25T10:00:00,ad_click,B01,
",
    );
    let sql = repo().join("sql/lifecycle");
    let job = dir.join("jobs/life.toml");
    write(
        &job,
        &format!(
            r#"name = "life"
previous = ["lifecycle"]
[params]
as_of = {{ type = "date" }}
brand = {{ type = "string", default = "B01" }}
window_days = {{ type = "int", default = 30 }}
[sources]
users = {{ url = "../in/users.csv", format = "csv", schema = "user_id string" }}
orders = {{ url = "../in/orders.csv", format = "csv", schema = "user_id string, ts timestamp, brand string, amount double" }}
social_events = {{ url = "../in/social_events.csv", format = "csv", schema = "user_id string, ts timestamp, action string, brand string, referrer_id string" }}
[[step]]
name = "lifecycle"
sql = "{sql}/stages.sql"
[[export]]
table = "lifecycle"
to = "lifecycle.parquet"
[[step]]
name = "lifecycle_moves"
sql = "{sql}/moves.sql"
[[export]]
table = "lifecycle_moves"
to = "moves.csv"
order_by = ["user_id"]
[[step]]
name = "lifecycle_transitions"
sql = "{sql}/transitions.sql"
[[export]]
table = "lifecycle_transitions"
to = "transitions.csv"
[[segment]]
name = "intent_to_conversion"
query = "SELECT user_id FROM lifecycle_moves WHERE from_stage = 'intent' AND to_stage = 'conversion'"
[[export]]
segments = ["intent_to_conversion"]
format = "csv"
min_size = 1
"#,
            sql = sql.display()
        ),
    );
    job
}

#[test]
fn stages_moves_and_the_transition_matrix() {
    let tmp = tempfile::tempdir().unwrap();
    let job = lifecycle_job(tmp.path());
    let out = tmp.path().join("out");
    for date in ["2026-11-10", "2026-11-20"] {
        let res = bin()
            .arg("run")
            .arg(&job)
            .args(["--date", date, "--output"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(res.status.success(), "{}", output_text(&res));
    }
    let first =
        std::fs::read_to_string(published_at(&out, "2026-11-10").join("moves.csv")).unwrap();
    // u1: 2 orders + a share; u6: 2 orders and brought u7 in through a share; u5's only order
    // has a negative amount and its click is after as_of; u7 bought another brand.
    assert_eq!(
        first,
        "user_id,brand,from_stage,to_stage,moved
u1,B01,new,advocacy,true
u2,B01,new,conversion,true
u3,B01,new,intent,true
u4,B01,new,awareness,true
u5,B01,new,none,true
u6,B01,new,advocacy,true
u7,B01,new,awareness,true
"
    );
    let run = published_at(&out, "2026-11-20");
    let second = std::fs::read_to_string(run.join("moves.csv")).unwrap();
    assert_eq!(
        second,
        "user_id,brand,from_stage,to_stage,moved
u1,B01,advocacy,advocacy,false
u2,B01,conversion,conversion,false
u3,B01,intent,conversion,true
u4,B01,awareness,intent,true
u5,B01,none,none,false
u6,B01,advocacy,advocacy,false
u7,B01,awareness,awareness,false
"
    );
    assert_eq!(
        std::fs::read_to_string(run.join("transitions.csv")).unwrap(),
        "brand,from_stage,to_stage,users
B01,advocacy,advocacy,2
B01,awareness,awareness,1
B01,awareness,intent,1
B01,conversion,conversion,1
B01,intent,conversion,1
B01,none,none,1
"
    );
    assert_eq!(
        std::fs::read_to_string(
            run.join("csv/intent_to_conversion/target/intent_to_conversion_part000.csv")
        )
        .unwrap(),
        "user_id\nu3\n"
    );
}
