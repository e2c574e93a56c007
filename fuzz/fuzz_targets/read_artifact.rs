//! Everything the artifact reader does with untrusted bytes, in memory: prelude, envelope,
//! protected headers and signatures, then (as `inspect` and `--allow-unsigned` do) the manifest,
//! its layout and the architecture. Nothing may panic, hang or allocate beyond the caps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nnsign::format::{self, Envelope, Manifest, PRELUDE_LEN};

fuzz_target!(|data: &[u8]| {
    let Some(prelude) = data.get(..PRELUDE_LEN) else { return };
    let Ok(len) = format::read_prelude(prelude.try_into().unwrap()) else { return };
    let Some(envelope) = data.get(PRELUDE_LEN..PRELUDE_LEN + len as usize) else { return };
    let Ok(envelope) = Envelope::parse(envelope) else { return };
    for sig in &envelope.signatures {
        let _ = nnsign::signature::check(sig, &envelope.manifest);
    }
    let Ok(manifest) = Manifest::decode(&envelope.manifest) else { return };
    let Ok(layout) = manifest.validate() else { return };
    let Some(Ok(arch)) = manifest.arch.as_ref().map(nnsign::model::Graph::decode) else { return };
    let _ = arch.validate(&layout.tensors);
});
