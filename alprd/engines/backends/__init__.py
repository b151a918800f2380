"""One file per runtime. Imported by name (see alprd.engines.registry) so a host
without a runtime never imports it."""
