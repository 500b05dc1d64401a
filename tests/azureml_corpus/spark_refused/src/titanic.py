import argparse

from pyspark.sql import SparkSession

parser = argparse.ArgumentParser()
parser.add_argument("--titanic_data")
parser.add_argument("--wrangled_data")
args = parser.parse_args()
spark = SparkSession.builder.getOrCreate()
df = spark.read.option("header", "true").csv(args.titanic_data)
df.na.drop().write.mode("overwrite").csv(args.wrangled_data)
