"""Test dummies shipped with the package (tiny corpora, flag sets), as Lhotse does."""
