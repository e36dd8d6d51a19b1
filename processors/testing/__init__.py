"""Test harnesses that drive the processors (shipped so scripts and tests share them)."""
