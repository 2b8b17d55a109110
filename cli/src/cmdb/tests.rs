//! Rows to mappings: grouping, provenance names, every bad cell named by
//! line and column, and the diff that makes a re-import a no-op.

use std::collections::BTreeMap;

use super::parse;
use super::plan::{self, Change, ImportConfig};

/// (cidrs, hostnames, labels as k=v,...) of one rule.
type RuleView = (Option<Vec<String>>, Option<Vec<String>>, String);

fn cfg() -> ImportConfig {
    ImportConfig {
        file: "assets.csv".into(),
        source: "servicenow".into(),
        map: vec![
            ("application".into(), "app".into()),
            ("environment".into(), "env".into()),
        ],
        cidr_column: "ip".into(),
        hostname_column: "fqdn".into(),
        priority: 10,
    }
}

const GOOD: &str = "ip,fqdn,application,environment\n\
10.1.0.5,,payments,prod\n\
10.1.0.0/24,,payments,prod\n\
,mainframe-1.corp,ledger,prod\n\
2001:db8::1,db.corp,ledger,prod\n";

#[test]
fn rows_group_by_label_set_into_one_mapping_per_source() {
    let rows = parse::csv("assets.csv", GOOD).expect("csv");
    let d = plan::plan(&cfg(), &rows).expect("plan");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].name, "cmdb-servicenow");
    assert_eq!(d[0].spec.priority, 10);
    let rules: Vec<RuleView> = d[0]
        .spec
        .rules
        .iter()
        .map(|r| {
            let l: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (
                r.match_.cidrs.clone(),
                r.match_.hostnames.clone(),
                l.join(","),
            )
        })
        .collect();
    assert_eq!(
        rules,
        vec![
            (
                Some(vec!["2001:db8::1/128".into()]),
                None,
                "app=ledger,env=prod".into()
            ),
            (
                Some(vec!["10.1.0.0/24".into(), "10.1.0.5/32".into()]),
                None,
                "app=payments,env=prod".into()
            ),
            (
                None,
                Some(vec!["db.corp".into(), "mainframe-1.corp".into()]),
                "app=ledger,env=prod".into()
            ),
        ]
    );
    assert_eq!(
        d[0].spec.rules[1].name.as_deref(),
        Some("cmdb servicenow lines 2,3")
    );
}

#[test]
fn a_bad_cell_names_its_line_and_column_and_plans_nothing() {
    for (text, expect) in [
        (
            "ip,fqdn,application,environment\n10.1.0.5,,payments,prod\n10.1.0.300,,x,prod\n",
            "assets.csv:3:1: column \"ip\": \"10.1.0.300\" is not an IP address or CIDR",
        ),
        (
            "ip,fqdn,application,environment\n10.1.0.5,,pay ments,prod\n",
            "assets.csv:2:11: column \"application\": \"pay ments\": only letters",
        ),
        (
            "ip,fqdn,application,environment\n10.1.0.5,,payments,\n",
            "assets.csv:2:1: column \"environment\" is missing or empty",
        ),
        (
            "ip,fqdn,application,environment\n,,payments,prod\n",
            "assets.csv:2:1: neither column \"ip\" nor \"fqdn\"",
        ),
        (
            "ip,fqdn,application,environment\n,db_1!.corp,payments,prod\n",
            "assets.csv:2:2: column \"fqdn\"",
        ),
    ] {
        let rows = parse::csv("assets.csv", text).expect("csv");
        let e = plan::plan(&cfg(), &rows).expect_err(text).to_string();
        assert!(e.starts_with(expect), "{e}\nexpected {expect}");
    }
    let mut bad_key = cfg();
    bad_key.map = vec![("application".into(), "not a key".into())];
    let rows = parse::csv("assets.csv", GOOD).expect("csv");
    assert!(plan::plan(&bad_key, &rows).is_err());
}

#[test]
fn the_diff_is_empty_on_reimport_and_names_what_changes() {
    let rows = parse::csv("assets.csv", GOOD).expect("csv");
    let d = plan::plan(&cfg(), &rows).expect("plan");
    let none = plan::diff(d.clone(), &BTreeMap::new());
    assert!(matches!(&none[..], [Change::Create(_)]));
    let text = plan::render(&none);
    assert!(
        text.starts_with("create labelmapping/cmdb-servicenow\n  + cidrs"),
        "{text}"
    );
    let there: BTreeMap<_, _> = d.iter().map(|d| (d.name.clone(), d.spec.clone())).collect();
    assert_eq!(
        plan::diff(d.clone(), &there),
        vec![Change::Unchanged("cmdb-servicenow".into())]
    );
    let changed = GOOD.replace("10.1.0.5,,payments", "10.1.0.6,,payments");
    let rows = parse::csv("assets.csv", &changed).expect("csv");
    let d2 = plan::plan(&cfg(), &rows).expect("plan");
    let mut stale = there.clone();
    stale.insert("cmdb-servicenow-2".into(), d[0].spec.clone());
    let text = plan::render(&plan::diff(d2, &stale));
    assert!(text.contains("update labelmapping/cmdb-servicenow\n  - cidrs 10.1.0.0/24,10.1.0.5/32 -> app=payments,env=prod\n  + cidrs 10.1.0.0/24,10.1.0.6/32"), "{text}");
    assert!(
        text.contains("delete labelmapping/cmdb-servicenow-2"),
        "{text}"
    );
}

#[test]
fn json_exports_plan_like_csv() {
    let text = r#"[{"ip": "10.1.0.5", "application": "payments", "environment": "prod"},
 {"ip": "10.1.0.0/24", "application": "payments", "environment": "prod"},
 {"fqdn": "mainframe-1.corp", "application": "ledger", "environment": "prod"},
 {"ip": "2001:db8::1", "fqdn": "db.corp", "application": "ledger", "environment": "prod"}]"#;
    let mut c = cfg();
    c.file = "assets.json".into();
    let from_json = plan::plan(&c, &parse::json("assets.json", text).expect("json")).expect("plan");
    let from_csv = plan::plan(&cfg(), &parse::csv("assets.csv", GOOD).expect("csv")).expect("plan");
    let specs = |d: &[plan::Desired]| -> Vec<_> {
        d.iter()
            .flat_map(|d| {
                d.spec
                    .rules
                    .iter()
                    .map(|r| (r.match_.clone(), r.labels.clone()))
            })
            .collect()
    };
    assert_eq!(specs(&from_json), specs(&from_csv));
    let bad = text.replace("\"2001:db8::1\"", "\"2001:db8::zz\"");
    let e = plan::plan(&c, &parse::json("assets.json", &bad).expect("json")).expect_err("bad ip");
    assert!(
        e.to_string().starts_with("assets.json:4:3: column \"ip\""),
        "{e}"
    );
}
