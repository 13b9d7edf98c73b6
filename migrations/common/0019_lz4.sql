-- Issue 23: how PostgreSQL compresses the large values inflow stores (its own part of this
-- migration). Nothing is portable here.
SELECT 1;
