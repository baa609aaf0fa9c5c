//! Statistics for compare and bisect (placeholder until the module lands).
