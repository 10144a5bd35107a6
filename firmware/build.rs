//! Build script: gives each binary its linker script (the bootloader and the application live in
//! different slots of code memory), and tells cargo to relink when a script changes.

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_string());
    println!("cargo:rustc-link-search={manifest_dir}/link");
    println!("cargo:rustc-link-arg-bin=bootloader=-Tbootloader.ld");
    println!("cargo:rustc-link-arg-bin=application=-Tapplication.ld");
    println!("cargo:rustc-link-arg=--build-id=none");
    println!("cargo:rerun-if-changed=link/common.ld");
    println!("cargo:rerun-if-changed=link/bootloader.ld");
    println!("cargo:rerun-if-changed=link/application.ld");
    println!("cargo:rerun-if-env-changed=IMPRINT_APP_VERSION");
}
