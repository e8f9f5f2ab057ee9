//! Exposes PyO3's interpreter cfgs (notably `Py_GIL_DISABLED` for free-threaded builds)
//! to this crate, which picks the pool's lock from them.
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
