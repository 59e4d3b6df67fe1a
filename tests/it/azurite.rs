//! object_store's Azure client against a real Azurite blob service (tests/common/azurite.rs):
//! create-if-absent writes, reads and listings, and what a container that is not there
//! gives.

use crate::common::azurite::Azurite;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

#[tokio::test]
async fn create_refuses_an_existing_blob_and_keeps_the_first() {
    let azurite = Azurite::start();
    assert!(azurite.create_container("lake"));
    let store = azurite.object_store("lake");
    let path = Path::from("cosmos/date=2026-12-06/part-0.parquet");
    let create = || PutOptions { mode: PutMode::Create, ..PutOptions::default() };

    store.put_opts(&path, PutPayload::from_static(b"first"), create()).await.expect("first create");
    let err = store.put_opts(&path, PutPayload::from_static(b"second"), create()).await.unwrap_err();
    assert!(matches!(err, object_store::Error::AlreadyExists { .. }), "second create: {err:?}");

    let bytes = store.get(&path).await.expect("get").bytes().await.expect("body");
    assert_eq!(&bytes[..], b"first");

    store.put(&Path::from("entra/part-0.parquet"), PutPayload::from_static(b"other")).await.unwrap();
    let listed: Vec<_> = store.list(Some(&Path::from("cosmos"))).try_collect().await.expect("list");
    let names: Vec<&str> = listed.iter().map(|m| m.location.as_ref()).collect();
    assert_eq!(names, ["cosmos/date=2026-12-06/part-0.parquet"]);
    assert_eq!(listed[0].size, 5);

    // Listing after an offset (object_store sends `startFrom`; not in emulator mode, see
    // Azurite::object_store): only what sorts after it.
    for name in ["cosmos/date=2026-12-07/part-0.parquet", "cosmos/date=2026-12-08/part-0.parquet"] {
        store.put(&Path::from(name), PutPayload::from_static(b"later")).await.unwrap();
    }
    let after: Vec<_> = store.list_with_offset(Some(&Path::from("cosmos")), &path).try_collect().await.expect("list");
    let mut names: Vec<String> = after.iter().map(|m| m.location.to_string()).collect();
    names.sort();
    assert_eq!(names, ["cosmos/date=2026-12-07/part-0.parquet", "cosmos/date=2026-12-08/part-0.parquet"]);
}

#[tokio::test]
async fn a_missing_container_is_an_error_and_creating_one_twice_is_not() {
    let azurite = Azurite::start();
    let store = azurite.object_store("absent");
    let path = Path::from("a/b.parquet");

    // Each says which container is missing, in Azure's words; put and get as NotFound
    // (a PUT too: the 404 is the container's, not the blob's), a listing as Generic.
    let err = store.put(&path, PutPayload::from_static(b"x")).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }), "put: {err:?}");
    assert!(err.to_string().contains("ContainerNotFound"), "put: {err}");
    let err = store.get(&path).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }), "get: {err:?}");
    assert!(err.to_string().contains("ContainerNotFound"), "get: {err}");
    let err = store.list(None).try_collect::<Vec<_>>().await.unwrap_err();
    assert!(matches!(err, object_store::Error::Generic { store: "MicrosoftAzure", .. }), "list: {err:?}");
    let message = err.to_string();
    assert!(message.contains("404 Not Found") && message.contains("ContainerNotFound"), "list: {message}");

    assert!(azurite.create_container("absent"), "the first create makes it");
    assert!(!azurite.create_container("absent"), "the second finds it there (409), and is accepted");
    store.put(&path, PutPayload::from_static(b"x")).await.expect("put once the container is there");
    assert_eq!(&store.get(&path).await.unwrap().bytes().await.unwrap()[..], b"x");
}
