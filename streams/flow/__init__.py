"""The Bytewax dataflow: ``dataflow`` builds it from a source and a sink, ``builtin`` and
``streams.metrics`` hold its window operators, ``decode`` its edges, ``process`` runs it."""
