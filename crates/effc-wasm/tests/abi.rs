//! The wasm module's C ABI, built for the host: the spec harness' models through
//! `plan.json` + `weights.bin` as `effc compile --target web` writes them equal
//! effc-cpu run directly, bit for bit, and every bad input is a message.

use effc_cpu::CpuModel;
use effc_plan::{plan_with, Plan, Precision, Tuning};
use effc_testkit::seeded;
use effc_testkit::spec::{cases_with, Check};
use effc_wasm::*;
use effc_weights::Weights;

/// `bytes` copied into memory from `effc_alloc`, as JavaScript does.
struct Copied(*mut u8, usize);

impl Copied {
    fn new(bytes: &[u8]) -> Copied {
        let p = effc_alloc(bytes.len());
        assert!(!p.is_null());
        // SAFETY: effc_alloc reserved bytes.len() bytes at p.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
        Copied(p, bytes.len())
    }
}

impl Drop for Copied {
    fn drop(&mut self) {
        // SAFETY: from effc_alloc(self.1), freed once.
        unsafe { effc_free(self.0, self.1) }
    }
}

fn message() -> String {
    let (p, n) = (effc_message_ptr(), effc_message_len());
    // SAFETY: the message buffer holds n bytes of UTF-8 until the next call.
    String::from_utf8(unsafe { std::slice::from_raw_parts(p, n) }.to_vec()).unwrap()
}

/// `effc_create` through the ABI: the session, or the message.
fn create(plan: &[u8], weights: &[u8], max_batch: usize) -> Result<*mut Session, String> {
    let (p, w) = (Copied::new(plan), Copied::new(weights));
    // SAFETY: both are valid for their lengths.
    let s = unsafe { effc_create(p.0, p.1, w.0, w.1, max_batch) };
    if s.is_null() {
        Err(message())
    } else {
        Ok(s)
    }
}

fn site_files(plan: &Plan, packed: &[Vec<f32>]) -> (Vec<u8>, Vec<u8>) {
    let json = serde_json::to_vec(plan).unwrap();
    let bin = effc_codegen::web::plan_weights_bin(plan, packed).unwrap();
    (json, bin)
}

#[test]
fn the_abi_equals_effc_cpu_on_the_harness_specs() {
    let cases = cases_with(Check::Gpu);
    assert!(cases.len() >= 4);
    for (i, case) in cases.iter().enumerate() {
        let batch = case.header.batch;
        let m = case.model();
        let w = Weights::random(&m, 300 + i as u64);
        let plan = effc_plan::plan(&m);
        let packed = effc_plan::pack_weights(&plan, &m, w.by_name(&m)).unwrap();
        let (json, bin) = site_files(&plan, &packed);
        let per = m.input.iter().product::<usize>();
        let x = seeded(batch * per, i as u64);
        let want = CpuModel::new(plan.clone(), packed, batch, 1)
            .unwrap()
            .forward(&x, batch)
            .unwrap();

        let s = create(&json, &bin, batch).unwrap_or_else(|e| panic!("{}: {e}", case.file));
        // SAFETY: s is live until effc_destroy below; the input holds batch
        // images and the output batch · output_len values.
        let got = unsafe {
            let input = std::slice::from_raw_parts_mut(effc_input(s), batch * per);
            input.copy_from_slice(&x);
            assert_eq!(effc_forward(s, batch), 0, "{}: {}", case.file, message());
            let n = effc_output_len(s);
            assert_eq!(n, plan.output_len);
            let got = std::slice::from_raw_parts(effc_output(s), batch * n).to_vec();
            // Too large a batch is a message, and the session stays usable.
            assert_eq!(effc_forward(s, batch + 1), -1);
            assert!(message().contains(&format!("a batch of {}", batch + 1)));
            let info: serde_json::Value = serde_json::from_str(&{
                effc_info(s);
                message()
            })
            .unwrap();
            assert_eq!(info["isa"], effc_cpu::Isa::detect().name());
            assert_eq!(info["threads"], 1);
            assert_eq!(info["outputLen"], plan.output_len);
            effc_destroy(s);
            got
        };
        assert_eq!(got, want, "{}", case.file);
    }
}

#[test]
fn bad_files_are_refused_with_what_is_wrong() {
    let case = &cases_with(Check::Gpu)[0];
    let m = case.model();
    let w = Weights::random(&m, 1);
    let plan = effc_plan::plan(&m);
    let packed = effc_plan::pack_weights(&plan, &m, w.by_name(&m)).unwrap();
    let (json, bin) = site_files(&plan, &packed);
    let err = |json: &[u8], bin: &[u8], batch| create(json, bin, batch).err().unwrap();

    assert!(err(b"{", &bin, 1).starts_with("plan.json: not an effc plan"));
    assert!(err(&json, b"PNG....", 1).contains("no EFFCWEB header"));
    let mut v = bin.clone();
    v[8] = 9;
    assert!(err(&json, &v, 1).contains("version 9"));
    let e = err(&json, &bin[..bin.len() - 4], 1);
    assert!(e.contains("past the end of the file"), "{e}");
    assert!(err(&json, &bin[..20], 1).contains("header claims"));
    assert_eq!(err(&json, &bin, 0), "a batch of 0 images");
    let e = err(&json, &bin, usize::MAX / 2);
    assert!(
        e.starts_with("no memory for the input of a batch of"),
        "{e}"
    );

    // Weights packed for another plan: the fingerprint differs.
    let other = cases_with(Check::Gpu)
        .iter()
        .map(|c| effc_plan::plan(&c.model()))
        .find(|p| p.fingerprint() != plan.fingerprint())
        .unwrap();
    let mut renamed = other.clone();
    renamed.model = plan.model.clone();
    let e = err(&serde_json::to_vec(&renamed).unwrap(), &bin, 1);
    assert!(e.contains("packed for plan"), "{e}");

    // f16 plans: refused by name, before their weights are read.
    let f16 = plan_with(&m, &Tuning::default(), Precision::F16);
    let e = err(&serde_json::to_vec(&f16).unwrap(), &bin, 1);
    assert!(e.contains("f32 plans only") && e.contains("f16"), "{e}");
}

#[test]
fn the_weights_format_is_codegens() {
    assert_eq!(WEIGHTS_MAGIC, effc_codegen::web::WEIGHTS_MAGIC);
    assert_eq!(WEIGHTS_VERSION, effc_codegen::web::WEIGHTS_VERSION);
}
