#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| flynnrel_fuzz::capi(data));
