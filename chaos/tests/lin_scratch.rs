use faultline_chaos::check::porcupine::{load_jepsen_etcd, load_kv};
use faultline_chaos::check::*;
use std::time::{Duration, Instant};

#[test]
fn scratch() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/porcupine");
    let hs: Vec<_> = (0..=102).map(|n| load_jepsen_etcd(&dir.join("jepsen").join(format!("etcd_{n:03}.log"))).unwrap()).collect();
    for _ in 0..5 {
        let (mut steps, mut t) = (0, Duration::ZERO);
        let mut per = vec![];
        for h in &hs {
            let t0 = Instant::now();
            let r = check(&Register, h, &CheckOptions::default()).unwrap();
            let e = t0.elapsed();
            t += e; steps += r.steps; per.push(e);
        }
        println!("etcd: steps {steps} {t:?} 057 {:?} 099 {:?} 040 {:?}", per[57], per[99], per[40]);
    }
    let h = load_kv(&dir.join("kv").join("c50-ok.txt")).unwrap();
    let t = Instant::now();
    let r = check(&KeyValue, &h, &CheckOptions::default()).unwrap();
    println!("c50-ok: {:?} steps {} {:?}", r.verdict, r.steps, t.elapsed());
}
