//! Link settings of libqbench.so.

fn main() {
    // The helper thread runs the library's code for the life of the process: unloading it with
    // dlclose would pull that code from under the thread.
    println!("cargo::rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo::rustc-cdylib-link-arg=-Wl,-soname,libqbench.so");
    println!("cargo::rerun-if-changed=build.rs");
}
