"""Rich renderings of sagas: tables of each service's database, event lines."""
