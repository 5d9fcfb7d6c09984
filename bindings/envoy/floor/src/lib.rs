//! # portcullis-envoy-floor
//!
//! The floor of `bindings/envoy/bench.sh`: a proxy-wasm HTTP filter, built with the same SDK and
//! toolchain as the Portcullis filter, that forwards every request untouched. What Envoy spends
//! on it per request (creating the filter's context in V8, calling its request, response, log
//! and done callbacks, deleting the context) and the memory its VM takes are the least any
//! proxy-wasm filter costs in this Envoy; the Portcullis filter's cost above it is its own.

#[cfg(target_arch = "wasm32")]
mod filter {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::ContextType;

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| Box::new(Root));
    }}

    struct Root;

    impl Context for Root {}

    impl RootContext for Root {
        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Pass))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    /// Every callback keeps its default: continue.
    struct Pass;

    impl Context for Pass {}

    impl HttpContext for Pass {}
}
