use super::*;

fn load_str(text: &str) -> (Inventory, Vec<String>) {
    let mut inventory = Inventory::default();
    let mut errors = Vec::new();
    load_text(Path::new("in.yaml"), text, &mut inventory, &mut errors);
    imply_nodes(&mut inventory);
    (inventory, errors.iter().map(ToString::to_string).collect())
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\n\
                   spec: {nodeName: n1}\nstatus: {podIP: 10.0.0.1}\n";

#[test]
fn multi_document_files_lists_and_empty_documents() {
    let text = format!(
        "---\n{POD}---\n# only a comment\n---\napiVersion: v1\nkind: NamespaceList\nitems:\n\
         - {{apiVersion: v1, kind: Namespace, metadata: {{name: shop}}}}\n\
         - {{apiVersion: v1, kind: Namespace, metadata: {{name: ops}}}}\n"
    );
    let (inv, errors) = load_str(&text);
    assert_eq!(errors, Vec::<String>::new());
    assert_eq!(inv.snapshot.pods.len(), 1);
    assert_eq!(
        inv.snapshot.namespaces.keys().collect::<Vec<_>>(),
        ["ops", "shop"]
    );
    let origin = &inv.origins[&(Kind::Namespace, "ops".to_string())];
    assert_eq!((origin.document, origin.item), (2, Some(1)));
    assert_eq!(origin.to_string(), "in.yaml:14:3");
}

#[test]
fn nodes_named_by_pods_are_implied() {
    let (inv, _) = load_str(POD);
    assert!(inv.snapshot.nodes.contains_key("n1"));
    assert!(inv.implied_nodes.contains("n1"));
    let with_node = format!("{POD}---\napiVersion: v1\nkind: Node\nmetadata: {{name: n1}}\n");
    let (inv, _) = load_str(&with_node);
    assert!(inv.implied_nodes.is_empty());
}

#[test]
fn other_kinds_are_skipped_with_a_warning() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: shop}\n";
    let (inv, errors) = load_str(text);
    assert!(errors.is_empty());
    assert_eq!(
        inv.warnings,
        ["in.yaml (document 1): skipping v1 ConfigMap settings: not an input of the compiler"]
    );
}

#[test]
fn documents_that_are_not_objects() {
    let cases = [
        ("- a\n- b\n", "in.yaml:1:1: expected a Kubernetes object (a mapping with apiVersion and kind)"),
        (
            "apiVersion: v1\nmetadata: {name: x}\n",
            "in.yaml:1:1: object x has no kind: every manifest needs apiVersion and kind",
        ),
        (
            "kind: Pod\nmetadata: {name: x}\n",
            "in.yaml:1:1: object default/x has no apiVersion: every manifest needs apiVersion and kind",
        ),
        (
            "apiVersion: bulkhead.dev/v1\nkind: SegmentationPolicy\nmetadata: {name: p}\n",
            "in.yaml:1:1: SegmentationPolicy p: apiVersion: SegmentationPolicy is served as bulkhead.dev/v1alpha1, not bulkhead.dev/v1",
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {labels: {a: b}}\n",
            "in.yaml:3:1: Namespace (no name): metadata.name: required",
        ),
    ];
    for (text, expected) in cases {
        let (_, errors) = load_str(text);
        assert_eq!(errors, [expected], "{text}");
    }
}

#[test]
fn field_errors_point_at_the_field() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nstatus:\n  podIPs:\n  - ip: 10.0.0.1\n  - ip: 10.0.0.x\n";
    let (_, errors) = load_str(text);
    assert_eq!(
        errors,
        [r#"in.yaml:7:5: Pod default/web: status.podIPs[1].ip: "10.0.0.x" is not an IP address"#]
    );

    let text = "apiVersion: bulkhead.dev/v1alpha1\nkind: SegmentationPolicy\nmetadata: {name: p}\n\
                spec:\n  scope: {}\n  ingress:\n  - action: allow\n    ports: [{protocol: ICMP, port: 8}]\n";
    let (_, errors) = load_str(text);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("in.yaml:5:3: SegmentationPolicy p: spec.scope: scope must have"),
        "{errors:?}"
    );
    assert_eq!(
        errors[1],
        "in.yaml:8:13: SegmentationPolicy p: spec.ingress[0].ports[0]: ICMP and ICMPv6 have no ports; use icmpType to match a message type"
    );

    let text = "apiVersion: bulkhead.dev/v1alpha1\nkind: SegmentationPolicy\nmetadata: {name: p}\n\
                spec:\n  scope: {clusterWide: true}\n  ingress:\n  - action: permit\n";
    let (_, errors) = load_str(text);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with(
            "in.yaml:7:13: SegmentationPolicy p: spec.ingress[0].action: unknown variant `permit`"
        ),
        "{errors:?}"
    );
}

#[test]
fn a_syntax_error_stops_the_file_with_its_line() {
    let text = format!("{POD}---\nkind: Pod\nmetadata: {{name: [x\n");
    let (inv, errors) = load_str(&text);
    assert_eq!(
        inv.snapshot.pods.len(),
        1,
        "documents before the error are kept"
    );
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("in.yaml:9:1: invalid YAML: "),
        "{errors:?}"
    );
}

#[test]
fn discovery_is_recursive_sorted_and_skips_hidden_entries() {
    let root = std::env::temp_dir().join(format!("bulkhead-discover-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    for dir in ["b", "a/deep", ".git"] {
        fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    for file in [
        "b/2.yaml",
        "a/deep/1.yml",
        "a/0.json",
        "z.YAML",
        "notes.md",
        ".git/x.yaml",
        "a/.hidden.yaml",
    ] {
        fs::write(root.join(file), "").expect("write");
    }
    let found = discover(&root).expect("found");
    let relative: Vec<String> = found
        .iter()
        .map(|p| {
            p.strip_prefix(&root)
                .expect("under root")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(relative, ["a/0.json", "a/deep/1.yml", "b/2.yaml", "z.YAML"]);
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn strips_only_a_trailing_location() {
    assert_eq!(strip_location("spec: bad at line 3 column 4"), "spec: bad");
    assert_eq!(strip_location("at line x column y"), "at line x column y");
}
