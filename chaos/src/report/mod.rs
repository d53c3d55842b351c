//! Rendering results (in progress).
