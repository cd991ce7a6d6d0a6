"""Small makers of test data shared by several test folders."""
