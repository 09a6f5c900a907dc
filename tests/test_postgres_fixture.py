"""The `postgres_server` fixture (tests/postgres.py): a real PostgreSQL server on 127.0.0.1, in a temporary folder."""

import os
import stat

import sqlalchemy


def test_the_server_stores_and_reads_back_rows_with_psycopg2(postgres_server):
    url = postgres_server.create_database("fixture_check")
    assert url == f"postgresql+psycopg2://postgres@127.0.0.1:{postgres_server.port}/fixture_check"
    assert postgres_server.url("fixture_check", driver=None).startswith("postgresql://postgres@127.0.0.1:")
    connection = postgres_server.connect("fixture_check")
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("CREATE TABLE runs (id serial PRIMARY KEY, architecture text NOT NULL, accuracy real)")
            cursor.executemany(
                "INSERT INTO runs (architecture, accuracy) VALUES (%s, %s)", [("mlp", 0.25), ("simple_cnn", 0.5)]
            )
        with connection.cursor() as cursor:
            cursor.execute("SELECT architecture, accuracy FROM runs ORDER BY id")
            assert cursor.fetchall() == [("mlp", 0.25), ("simple_cnn", 0.5)]
            cursor.execute("SHOW fsync")
            assert cursor.fetchone() == ("off",)
            cursor.execute("SELECT inet_server_addr()::text")
            assert cursor.fetchone()[0].startswith("127.0.0.1")
    finally:
        connection.close()


def test_the_sqlalchemy_url_works_as_given(postgres_server):
    engine = sqlalchemy.create_engine(postgres_server.create_database("fixture_sqlalchemy"))
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("CREATE TABLE t (x int)"))
            connection.execute(sqlalchemy.text("INSERT INTO t VALUES (7)"))
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("SELECT sum(x) FROM t")).scalar() == 7
    finally:
        engine.dispose()


def test_the_cluster_lives_in_its_own_temporary_folder_with_the_socket(postgres_server):
    folder = postgres_server.folder
    assert (folder / "data" / "PG_VERSION").is_file()
    assert (folder / f".s.PGSQL.{postgres_server.port}").exists()  # the unix socket, not in /var/run
    assert stat.S_IMODE(os.stat(folder / "data").st_mode) & 0o077 == 0  # PostgreSQL's own check: private
