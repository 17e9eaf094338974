"""Content: legal documents, help articles, email templates and landing pages on one versioned
workflow engine; email delivery; see content/README.md."""
