//! Judging a recorded run (in progress).
