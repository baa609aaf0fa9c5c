//! Programs that break a guest on purpose, so that lab's own integration tests can show the
//! runner classifies each failure right (kernel-crash, hang, infra-error). They are never
//! part of a test suite; the image carries them under `/lab/bin/` like the real tests.
