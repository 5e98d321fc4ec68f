"""Real-TenSEAL tests of the HE engine (he/, crypto/he_*, sdk/)."""
