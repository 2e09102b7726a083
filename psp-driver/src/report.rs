//! The SEV-SNP attestation report.
