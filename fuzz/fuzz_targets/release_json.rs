#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| flynnrel_fuzz::release_json(data));
