"""The recording side: plan the protocol's requests, send the ones not yet stored, capture
every completion into the store. The analysis side never imports this package."""
