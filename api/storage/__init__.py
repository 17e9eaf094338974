"""File store tools (`/platform/storage/...`) for operators."""
