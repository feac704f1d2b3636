use super::*;

const FILE: &str = "
loadbalancers:
  - name: web
    vip: 10.10.0.100
    listeners:
      - {port: 80, protocol: tcp, mode: nat, pool: web}
pools:
  - name: web
    table_size: 251
    backends:
      - {address: 10.10.1.1, port: 8080}
      - {address: 10.10.1.2, port: 8080, weight: 3}
";

#[test]
fn plans_creates_then_nothing() {
    let (d, _) = desired_from_yaml(FILE).unwrap();
    let changes = plan(&d, &Current::default(), true).unwrap();
    let text: Vec<String> = changes.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        vec![
            "+ pool web (maglev, table 251)",
            "+ backend 10.10.1.1:8080 in pool web (weight 1, enabled)",
            "+ backend 10.10.1.2:8080 in pool web (weight 3, enabled)",
            "+ loadbalancer web (vip 10.10.0.100)",
            "+ listener web/80/tcp (nat -> pool web)",
        ]
    );
    let cur = Current {
        health_checks: Vec::new(),
        load_balancers: vec![pb::LoadBalancer {
            id: 1,
            name: "web".into(),
            vip: "10.10.0.100".into(),
            ..Default::default()
        }],
        pools: vec![pb::Pool {
            id: 2,
            name: "web".into(),
            algorithm: "maglev".into(),
            table_size: 251,
            ..Default::default()
        }],
        backends: vec![
            pb::Backend {
                id: 3,
                pool_id: 2,
                address: "10.10.1.1".into(),
                port: 8080,
                weight: 1,
                admin_state: "enabled".into(),
                ..Default::default()
            },
            pb::Backend {
                id: 4,
                pool_id: 2,
                address: "10.10.1.2".into(),
                port: 8080,
                weight: 1,
                admin_state: "enabled".into(),
                ..Default::default()
            },
            pb::Backend {
                id: 5,
                pool_id: 2,
                address: "10.10.1.9".into(),
                port: 8080,
                weight: 1,
                admin_state: "enabled".into(),
                ..Default::default()
            },
        ],
        listeners: vec![pb::Listener {
            id: 6,
            load_balancer_id: 1,
            port: 80,
            protocol: "tcp".into(),
            mode: "nat".into(),
            encap: "ipip".into(),
            pool_id: 2,
            ..Default::default()
        }],
    };
    let text: Vec<String> = plan(&d, &cur, true)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
            text,
            vec![
                "~ backend 10.10.1.2:8080 in pool web: weight 1, mac -, enabled -> weight 3, mac -, enabled",
                "- backend 10.10.1.9:8080 in pool web",
            ]
        );
    assert_eq!(plan(&d, &cur, false).unwrap().len(), 1);
    let mut moved = cur.clone();
    moved.load_balancers[0].vip = "10.10.0.7".into();
    assert!(matches!(
        plan(&d, &moved, true),
        Err(ApplyError::Conflict(_))
    ));
}

#[test]
fn file_errors_have_lines() {
    let e = desired_from_yaml("pools:\n  - name: x\n    table_size: 10\n").unwrap_err();
    assert!(e.to_string().contains("line 3"), "{e}");
}
