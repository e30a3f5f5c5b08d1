//! Session layer: filled in by issue 3.
