//! Where a cluster runs. `local` (processes on 127.0.0.1 with the proxy in
//! this process) is the default and the only platform in this build; docker
//! compose and Kubernetes come next.
pub mod local;
