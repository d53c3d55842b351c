use faultline_chaos::check::porcupine::load_kv;
use faultline_chaos::check::*;
use std::time::Instant;

#[test]
fn scratch() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/porcupine");
    let h = load_kv(&dir.join("kv").join("c50-ok.txt")).unwrap();
    for _ in 0..20 {
        let t = Instant::now();
        let r = check(&KeyValue, &h, &CheckOptions::default()).unwrap();
        println!("c50-ok: {:?} steps {} {:?}", r.verdict, r.steps, t.elapsed());
    }
}
