//! The Rust mirrors in `src/layout.rs` against the compiled objects' BTF:
//! the size of every shared struct and the offset of every field.

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};

use bulkhead_agent::layout::*;
use object::{Object, ObjectSection};

/// name → (size, [(field, byte offset)])
type Structs = BTreeMap<String, (u32, Vec<(String, u32)>)>;

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn c_str(strings: &[u8], off: u32) -> String {
    let s = &strings[off as usize..];
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    String::from_utf8_lossy(&s[..end]).into_owned()
}

/// A minimal reader of the .BTF section: enough to list structs and members.
fn btf_structs(btf: &[u8]) -> Structs {
    assert_eq!(
        u16::from_le_bytes([btf[0], btf[1]]),
        0xeb9f,
        "BTF magic (little-endian)"
    );
    let hdr_len = u32_at(btf, 4) as usize;
    let (type_off, type_len) = (u32_at(btf, 8) as usize, u32_at(btf, 12) as usize);
    let str_off = u32_at(btf, 16) as usize;
    let types = &btf[hdr_len + type_off..hdr_len + type_off + type_len];
    let strings = &btf[hdr_len + str_off..];
    let mut out = Structs::new();
    let mut pos = 0;
    while pos < types.len() {
        let name_off = u32_at(types, pos);
        let info = u32_at(types, pos + 4);
        let size = u32_at(types, pos + 8);
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let kind_flag = info >> 31;
        pos += 12;
        match kind {
            4 | 5 => {
                // struct / union: members of (name_off, type, offset)
                let mut fields = Vec::new();
                for m in 0..vlen {
                    let at = pos + m * 12;
                    let raw = u32_at(types, at + 8);
                    let bits = if kind_flag == 1 { raw & 0xff_ffff } else { raw };
                    fields.push((c_str(strings, u32_at(types, at)), bits / 8));
                }
                pos += vlen * 12;
                if kind == 4 && name_off != 0 {
                    out.insert(c_str(strings, name_off), (size, fields));
                }
            }
            1 => pos += 4,             // int
            3 => pos += 12,            // array
            6 => pos += vlen * 8,      // enum
            13 => pos += vlen * 8,     // func_proto
            14 => pos += 4,            // var
            15 => pos += vlen * 12,    // datasec
            17 => pos += 4,            // decl_tag
            19 => pos += vlen * 12,    // enum64
            2 | 7..=12 | 16 | 18 => {} // ptr, fwd, typedef, volatile, const, restrict, func, float, type_tag
            other => panic!("unknown BTF kind {other}"),
        }
    }
    out
}

macro_rules! check {
    ($structs:expr, $c:literal, $rust:ty, [$($cf:literal => $rf:ident),* $(,)?]) => {{
        let (size, fields) = $structs.get($c).unwrap_or_else(|| panic!("struct {} not in BTF", $c));
        assert_eq!(*size as usize, size_of::<$rust>(), "size of struct {}", $c);
        let expected: Vec<(String, u32)> = vec![$(($cf.to_string(), offset_of!($rust, $rf) as u32)),*];
        assert_eq!(fields, &expected, "fields of struct {} (name, offset)", $c);
    }};
}

#[test]
fn mirrors_match_btf_of_every_object() {
    for (object_name, bytes) in bulkhead_agent::loader::objects() {
        let file = object::File::parse(bytes).expect("ELF");
        let section = file
            .section_by_name(".BTF")
            .unwrap_or_else(|| panic!("{object_name}: no .BTF"));
        let s = btf_structs(section.data().expect("BTF data"));

        check!(s, "ipcache_v4_key", IpcacheV4Key, ["prefixlen" => prefixlen, "addr" => addr]);
        check!(s, "ipcache_v6_key", IpcacheV6Key, ["prefixlen" => prefixlen, "addr" => addr]);
        check!(s, "identity_value", IdentityValue, ["identity" => identity, "pad" => pad]);
        check!(s, "endpoint_key", EndpointKey, ["family" => family, "pad" => pad, "addr" => addr]);
        check!(s, "endpoint_info", EndpointInfo, ["identity" => identity, "mode" => mode, "flags" => flags, "pad" => pad, "ifindex" => ifindex]);
        check!(s, "policy_key", PolicyKey, [
            "prefixlen" => prefixlen, "subject" => subject, "peer" => peer,
            "direction" => direction, "protocol" => protocol, "port" => port_be,
        ]);
        check!(s, "policy_value", PolicyValue, ["rule_id" => rule_id, "action" => action, "pad" => pad]);
        check!(s, "failsafe_key", FailsafeKey, ["protocol" => protocol, "direction" => direction, "port" => port_be]);
        check!(s, "failsafe_value", FailsafeValue, ["present" => present]);
        check!(s, "ct_key", CtKey, [
            "saddr" => saddr, "daddr" => daddr, "sport" => sport_be, "dport" => dport_be,
            "protocol" => protocol, "family" => family, "direction" => direction, "pad" => pad,
        ]);
        check!(s, "ct_value", CtValue, [
            "last_seen_ns" => last_seen_ns, "packets" => packets, "bytes" => bytes,
            "created_ns" => created_ns, "report_ns" => report_ns, "generation" => generation, "rule_id" => rule_id, "peer_identity" => peer_identity,
            "policy_port" => policy_port, "action" => action, "verdict" => verdict,
            "would_verdict" => would_verdict, "reason" => reason, "flags" => flags, "pad" => pad,
        ]);
        check!(s, "flow_event", FlowEvent, [
            "timestamp_ns" => timestamp_ns, "packets" => packets, "bytes" => bytes,
            "flow_ns" => flow_ns, "saddr" => saddr, "daddr" => daddr,
            "local_identity" => local_identity, "peer_identity" => peer_identity, "rule_id" => rule_id,
            "generation" => generation, "ifindex" => ifindex,
            "sport" => sport_be, "dport" => dport_be, "family" => family, "protocol" => protocol,
            "direction" => direction, "event" => event, "action" => action, "verdict" => verdict,
            "would_verdict" => would_verdict, "mode" => mode, "reason" => reason, "flags" => flags,
            "pad" => pad,
        ]);
        check!(s, "datapath_state", DatapathState, ["generation" => generation, "pad" => pad]);
        check!(s, "rule_hit_value", RuleHitValue, ["count" => count, "last_hit_ns" => last_hit_ns]);
    }
    // aya's LPM key wrapper must lay the data out right after prefixlen.
    assert_eq!(
        size_of::<aya::maps::lpm_trie::Key<PolicyKeyData>>(),
        size_of::<PolicyKey>()
    );
    assert_eq!(
        size_of::<aya::maps::lpm_trie::Key<[u8; 16]>>(),
        size_of::<IpcacheV6Key>()
    );
}

fn define_value(header: &str, name: &str) -> u64 {
    let line = header
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name) && l.starts_with("#define"))
        .unwrap_or_else(|| panic!("#define {name} not found"));
    line.split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("value of {name}"))
}

#[test]
fn constants_match_the_c_header() {
    let header = include_str!("../../bpf/include/layout_types.h");
    let define = |name: &str| -> u64 {
        let line = header
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name) && l.starts_with("#define"))
            .unwrap_or_else(|| panic!("#define {name} not found"));
        line.split_whitespace()
            .nth(2)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("value of {name}"))
    };
    let pairs: &[(&str, u64)] = &[
        ("BH_LAYOUT_VERSION", u64::from(LAYOUT_VERSION)),
        ("BH_DIR_INGRESS", u64::from(DIR_INGRESS)),
        ("BH_DIR_EGRESS", u64::from(DIR_EGRESS)),
        ("BH_ACTION_NONE", u64::from(ACTION_NONE)),
        ("BH_ACTION_ALLOW", u64::from(ACTION_ALLOW)),
        ("BH_ACTION_DENY", u64::from(ACTION_DENY)),
        ("BH_ACTION_OVERRIDE_DENY", u64::from(ACTION_OVERRIDE_DENY)),
        ("BH_MODE_VISIBILITY", u64::from(MODE_VISIBILITY)),
        ("BH_MODE_SELECTIVE", u64::from(MODE_SELECTIVE)),
        ("BH_MODE_FULL", u64::from(MODE_FULL)),
        ("BH_VERDICT_ALLOW", u64::from(VERDICT_ALLOW)),
        ("BH_VERDICT_DENY", u64::from(VERDICT_DENY)),
        ("BH_EP_F_HOST", u64::from(EP_F_HOST)),
        ("BH_EVENT_NEW", u64::from(EVENT_NEW)),
        ("BH_EVENT_DENY", u64::from(EVENT_DENY)),
        ("BH_EVENT_WOULD_DENY", u64::from(EVENT_WOULD_DENY)),
        ("BH_EVENT_REEVAL_DENY", u64::from(EVENT_REEVAL_DENY)),
        ("BH_REASON_POLICY", u64::from(REASON_POLICY)),
        ("BH_REASON_DEFAULT", u64::from(REASON_DEFAULT)),
        ("BH_REASON_FAILSAFE", u64::from(REASON_FAILSAFE)),
        ("BH_REASON_SPOOFED", u64::from(REASON_SPOOFED)),
        ("BH_REASON_UNRELATED", u64::from(REASON_UNRELATED)),
        ("BH_REASON_CT_FULL", u64::from(REASON_CT_FULL)),
        ("BH_FAMILY_V4", u64::from(FAMILY_V4)),
        ("BH_FAMILY_V6", u64::from(FAMILY_V6)),
        ("BH_CNT_MAX", COUNTER_NAMES.len() as u64),
        ("BH_ID_ANY", u64::from(bulkhead_api::identity::ANY)),
        ("BH_ID_HOST", u64::from(bulkhead_api::identity::HOST)),
        ("BH_ID_WORLD", u64::from(bulkhead_api::identity::WORLD)),
    ];
    for (name, value) in pairs {
        assert_eq!(define(name), *value, "{name}");
    }
    // Counter names are the agent's; their order is the header's.
    for (i, name) in COUNTER_NAMES.iter().enumerate() {
        let define = format!("BH_CNT_{}", name.to_uppercase());
        assert_eq!(define_value(header, &define), i as u64, "{define}");
    }
    let conntrack = include_str!("../../bpf/include/conntrack_types.h");
    assert_eq!(
        define_value(conntrack, "BH_CT_F_CLOSING"),
        u64::from(CT_F_CLOSING)
    );
    assert_eq!(
        define_value(conntrack, "BH_CT_F_VIA_SERVICE"),
        u64::from(CT_F_VIA_SERVICE)
    );
    assert_eq!(
        define_value(conntrack, "BH_CT_F_SNAT_HIDDEN"),
        u64::from(CT_F_SNAT_HIDDEN)
    );
    assert_eq!(
        define_value(conntrack, "BH_CT_F_TO_SERVICE"),
        u64::from(CT_F_TO_SERVICE)
    );
    let flow = include_str!("../../bpf/include/flow_types.h");
    assert_eq!(
        define_value(flow, "BH_FLOW_F_SNAT_HIDDEN"),
        u64::from(FLOW_F_SNAT_HIDDEN)
    );
    assert_eq!(
        define_value(flow, "BH_FLOW_F_TO_SERVICE"),
        u64::from(FLOW_F_TO_SERVICE)
    );
    let policy = include_str!("../../bpf/include/policy_types.h");
    assert!(policy.contains(&format!(
        "#define BH_POLICY_FULL_PREFIX {POLICY_FULL_PREFIX}"
    )));
    assert!(policy.contains(&format!(
        "#define BH_POLICY_FIXED_PREFIX {POLICY_FIXED_PREFIX}"
    )));
}
