use proptest::prelude::*;

use super::*;

fn bucket(name: &str, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Bucket {
    Bucket {
        name: name.as_bytes().to_vec(),
        entries,
    }
}

/// Buckets of every shape: empty and inline, many pages with branch
/// levels, and one value far larger than a page (overflow pages).
fn assorted() -> Vec<Bucket> {
    let many = (0..5000u32)
        .map(|i| (i.to_be_bytes().to_vec(), vec![b'v'; (i % 97) as usize]))
        .collect();
    vec![
        bucket("empty", Vec::new()),
        bucket(
            "huge",
            vec![(b"image".to_vec(), vec![7; 3 * PAGE_BYTES + 5])],
        ),
        bucket("many", many),
        bucket("small", vec![(b"k".to_vec(), b"v".to_vec())]),
    ]
}

#[test]
fn buckets_of_every_shape_read_back_as_written() {
    let buckets = assorted();
    let file = write(&buckets);
    assert_eq!(file.len() % PAGE_BYTES, 0);
    assert_eq!(read(&file).unwrap(), buckets);
    assert_eq!(data_bytes(&file).unwrap(), file.len() as u64);
}

#[test]
fn a_big_bucket_gets_two_branch_levels_and_reads_back() {
    let entries: Entries = (0..40_000u32)
        .map(|i| {
            (
                format!("{i:040}").into_bytes(),
                vec![b'x'; (i % 9) as usize],
            )
        })
        .collect();
    let buckets = vec![bucket("key", entries)];
    let file = write(&buckets);
    assert_eq!(read(&file).unwrap(), buckets);
    // The bucket's root is a branch whose children are branches.
    let (meta, reader) = reader_of(&file);
    let root_leaf = leaf_elements(reader.page(meta.root).unwrap()).unwrap();
    let bucket_root = u64::from_le_bytes(root_leaf[0].value[..8].try_into().unwrap());
    let flags = |id: u64| u16::from_le_bytes(reader.page(id).unwrap()[8..10].try_into().unwrap());
    assert_eq!(flags(bucket_root), BRANCH_PAGE);
    let children = branch_children(reader.page(bucket_root).unwrap()).unwrap();
    assert!(children.len() > 1 && flags(children[0]) == BRANCH_PAGE);
}

#[test]
fn every_page_after_the_freelist_is_reachable_once() {
    // bbolt's consistency check (etcdctl snapshot status runs it) refuses
    // a page that is neither reachable nor free, or reachable twice.
    let file = write(&assorted());
    let (meta, reader) = reader_of(&file);
    let mut seen = vec![0u32; meta.high_water as usize];
    fn visit(reader: &Reader<'_>, id: u64, seen: &mut [u32]) {
        let page = reader.page(id).unwrap();
        let overflow = u32::from_le_bytes(page[12..16].try_into().unwrap()) as u64;
        for page_id in id..=id + overflow {
            seen[page_id as usize] += 1;
        }
        let flags = u16::from_le_bytes(page[8..10].try_into().unwrap());
        if flags & BRANCH_PAGE != 0 {
            for child in branch_children(page).unwrap() {
                visit(reader, child, seen);
            }
        } else {
            for element in leaf_elements(page).unwrap() {
                if element.flags & BUCKET_ELEMENT != 0 {
                    let root = u64::from_le_bytes(element.value[..8].try_into().unwrap());
                    if root != 0 {
                        visit(reader, root, seen);
                    }
                }
            }
        }
    }
    visit(&reader, meta.root, &mut seen);
    assert!(seen[FIRST_DATA_PAGE as usize..]
        .iter()
        .all(|&count| count == 1));
}

#[test]
fn a_damaged_meta_falls_back_to_the_other_and_two_refuse_the_file() {
    let buckets = assorted();
    let mut file = write(&buckets);
    file[PAGE_BYTES + PAGE_HEADER_BYTES + 20] ^= 1; // meta 1's root page id
    assert_eq!(read(&file).unwrap(), buckets);
    file[PAGE_HEADER_BYTES + 20] ^= 1; // meta 0's too
    assert!(matches!(read(&file), Err(BoltError::NotBolt(_))));
}

#[test]
fn what_is_not_bbolt_is_refused() {
    assert!(read(b"").is_err());
    assert!(read(&[0; 3 * PAGE_BYTES]).is_err());
    let file = write(&assorted());
    assert!(read(&file[..file.len() - PAGE_BYTES]).is_err());
}

fn buckets_strategy() -> impl Strategy<Value = Vec<Bucket>> {
    let entries = prop::collection::btree_map(
        prop::collection::vec(any::<u8>(), 1..40),
        prop::collection::vec(any::<u8>(), 0..600),
        0..120,
    );
    prop::collection::btree_map("[a-z]{1,8}", entries, 0..6).prop_map(|buckets| {
        buckets
            .into_iter()
            .map(|(name, entries)| Bucket {
                name: name.into_bytes(),
                entries: entries.into_iter().collect(),
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn any_buckets_round_trip(buckets in buckets_strategy()) {
        prop_assert_eq!(read(&write(&buckets)).unwrap(), buckets);
    }

    #[test]
    fn damaged_bytes_are_refused_or_read_but_never_panic(
        buckets in buckets_strategy(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..), 1..8),
    ) {
        let mut file = write(&buckets);
        for (at, mask) in flips {
            let at = at.index(file.len());
            file[at] ^= mask;
        }
        let _ = read(&file);
    }
}

/// The newest meta of `file` and a reader over its pages.
fn reader_of(file: &[u8]) -> (Meta, Reader<'_>) {
    let meta = newest_meta(file).unwrap();
    let reader = Reader {
        file,
        page_bytes: PAGE_BYTES,
        high_water: meta.high_water,
        visited: Default::default(),
    };
    (meta, reader)
}
