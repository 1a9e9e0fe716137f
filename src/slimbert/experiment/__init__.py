"""`slimbert experiment RECIPE.yaml`: teacher → professor → student as a resumable matrix
(cells.py plans and runs it, recipe.py reads the recipe, stages.py does the work,
tables.py writes the results)."""
