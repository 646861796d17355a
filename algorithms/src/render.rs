//! (module under construction; filled in by its own change)
