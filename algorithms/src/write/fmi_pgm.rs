//! FMI PGM writer (filled in below).
