"""Knowledge for file_search: what vector store ingestion reads out of the users' files."""
