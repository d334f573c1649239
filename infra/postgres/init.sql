-- One database for the mesh; each service creates and migrates its own schema.
CREATE DATABASE guichet;
