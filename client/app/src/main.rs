//! Browser entry point: mounts the app on `#app`.
#![forbid(unsafe_code)]

fn main() {
    #[cfg(target_arch = "wasm32")]
    {
        // Compiled and instantiated: the measurements tell this apart from the first render.
        if let Some(performance) = web_sys::window().and_then(|w| w.performance()) {
            let _ = performance.mark("sotto-wasm-started");
        }
        let root = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.get_element_by_id("app"));
        match root {
            Some(root) => {
                yew::Renderer::<sotto_app::App>::with_root(root).render();
            }
            None => {
                yew::Renderer::<sotto_app::App>::new().render();
            }
        }
    }
}
