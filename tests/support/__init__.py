"""Helpers the tests share: servers on loopback and small builders of workflows and images."""
