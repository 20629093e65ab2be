"""The data model (bottom wing): typed dataclasses, quantities, errors, file formats (YAML, JSON,
Arrow), the flat ``Cluster`` arrays and synthetic clusters. Imports nothing else of the engine."""
