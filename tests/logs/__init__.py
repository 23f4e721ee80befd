"""Tests for exgateway."""
