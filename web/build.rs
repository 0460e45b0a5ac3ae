// The browser UI is embedded with include_dir!, which cannot tell cargo about the files it
// reads; without this an edited page would not be rebuilt into the binary.
fn main() {
    println!("cargo:rerun-if-changed=ui");
    println!("cargo:rerun-if-changed=migrations");
}
