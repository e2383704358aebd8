//! The cases, one module per area of the runtime spec.

mod cgroups;
mod exec;
mod hooks;
mod lifecycle;
mod mounts;
mod namespaces;
mod process;
mod seccomp;
mod security;

use crate::harness::{CaseResult, Ctx};

pub type CaseFn = Box<dyn Fn(&mut Ctx) -> CaseResult + Send + Sync>;

pub struct Case {
    pub name: String,
    pub run: CaseFn,
}

pub fn case(
    name: impl Into<String>,
    run: impl Fn(&mut Ctx) -> CaseResult + Send + Sync + 'static,
) -> Case {
    Case {
        name: name.into(),
        run: Box::new(run),
    }
}

/// Every case, named `area/what`.
pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(lifecycle::cases());
    v.extend(process::cases());
    v.extend(mounts::cases());
    v.extend(namespaces::cases());
    v.extend(cgroups::cases());
    v.extend(seccomp::cases());
    v.extend(hooks::cases());
    v.extend(exec::cases());
    v.extend(security::cases());
    v
}
