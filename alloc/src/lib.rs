//! # portcullis-alloc
//!
//! The global allocator of Portcullis's Wasm builds (the engine component, the Envoy filter):
//! size classes with free lists in front of the system allocator (wasi-libc's dlmalloc).
//!
//! A decision allocates and frees hundreds of small blocks (Cedar's expressions, names, maps,
//! JSON). dlmalloc's bins and boundary tags took ~15% of a cached decision in the engine
//! component; here a small block is one pop or push on a singly linked list. Sizes up to
//! 512 bytes (alignment up to 16) are rounded up to a multiple of 16 and
//! served from that class's free list, refilled by carving 64 KiB chunks taken from the
//! system allocator. Freed small blocks return to their class's list, never to the system:
//! memory of a class is reused by that class only, so the footprint is the peak live use of
//! each class. Anything larger or more aligned goes to the system allocator unchanged.
//!
//! It relies on one fact of its targets: a Wasm module built without the `atomics` feature runs
//! on one thread, so the lists need no lock. [`SizeClasses`] is `Sync`, and so can be a
//! `#[global_allocator]`, only on such targets; elsewhere (tests on the host) it is a local,
//! `!Sync` value.
//!
//! ```text
//! #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
//! #[global_allocator]
//! static ALLOCATOR: portcullis_alloc::SizeClasses = portcullis_alloc::SizeClasses::new();
//! ```
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr;

/// Every block is aligned to this, and class sizes are multiples of it.
const ALIGN: usize = 16;
/// The largest size served from a class.
const MAX_SMALL: usize = 512;
const CLASSES: usize = MAX_SMALL / ALIGN;
/// Bytes taken from the system allocator at a time to carve small blocks from.
const CHUNK: usize = 64 * 1024;

/// The allocator. Only `&self` methods exist (as `GlobalAlloc` requires); the state is
/// in `Cell`s, so the type is `!Sync` (but on single-threaded Wasm) and cannot be shared
/// between threads by mistake.
pub struct SizeClasses {
    /// The first free block of each class; each free block's first word points to the next.
    free: [Cell<*mut u8>; CLASSES],
    /// The unused part of the current chunk: `next..end`.
    next: Cell<*mut u8>,
    end: Cell<*mut u8>,
}

/// The class of a small layout, `None` for the system allocator.
fn class(layout: Layout) -> Option<usize> {
    if layout.size() <= MAX_SMALL && layout.align() <= ALIGN {
        // Sizes 0..=16 are class 0, 17..=32 class 1, and so on.
        Some(layout.size().saturating_sub(1) / ALIGN)
    } else {
        None
    }
}

impl SizeClasses {
    /// An allocator with empty free lists.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            free: [const { Cell::new(ptr::null_mut()) }; CLASSES],
            next: Cell::new(ptr::null_mut()),
            end: Cell::new(ptr::null_mut()),
        }
    }

    /// A block of class `c` (`(c + 1) * ALIGN` bytes, `ALIGN`-aligned), or null when the system
    /// allocator has no more memory.
    fn small(&self, c: usize) -> *mut u8 {
        let Some(list) = self.free.get(c) else {
            return ptr::null_mut();
        };
        let head = list.get();
        if !head.is_null() {
            // SAFETY: `head` is a free block of this class: at least ALIGN bytes, ALIGN-aligned,
            // owned by this list since its `dealloc`, and its first word is the list's next
            // pointer (written by `push`), so it is readable as an aligned `*mut u8`.
            list.set(unsafe { head.cast::<*mut u8>().read() });
            return head;
        }
        let size = (c + 1) * ALIGN;
        let (next, end) = (self.next.get(), self.end.get());
        if end.addr() - next.addr() >= size && !next.is_null() {
            self.next.set(next.wrapping_add(size));
            return next;
        }
        // A new chunk; the rest of the old one (less than `size` bytes) stays unused.
        let Ok(chunk_layout) = Layout::from_size_align(CHUNK, ALIGN) else {
            return ptr::null_mut();
        };
        // SAFETY: `chunk_layout` has a non-zero size. The chunk is never freed.
        let chunk = unsafe { System.alloc(chunk_layout) };
        if chunk.is_null() {
            return chunk;
        }
        self.next.set(chunk.wrapping_add(size));
        self.end.set(chunk.wrapping_add(CHUNK));
        chunk
    }

    /// Return a block to class `c`'s list.
    ///
    /// # Safety
    /// `block` came from `small(c)` and is not used after this call.
    unsafe fn push(&self, c: usize, block: *mut u8) {
        if let Some(list) = self.free.get(c) {
            // SAFETY: the caller hands over an ALIGN-aligned block of at least ALIGN bytes that
            // nothing else uses any more; its first word becomes the list's link.
            unsafe { block.cast::<*mut u8>().write(list.get()) };
            list.set(block);
        }
    }
}

impl Default for SizeClasses {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY (of every method): small layouts get blocks of their class, which are at least as
// large and as aligned as the layout asks and are used by one owner at a time (a block is on a
// free list or handed out, never both); all other layouts go to `System` with the same layout,
// which is how `dealloc` and `realloc` tell them apart, since Rust passes back the layout a
// block was allocated with.
unsafe impl GlobalAlloc for SizeClasses {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class(layout) {
            Some(c) => self.small(c),
            // SAFETY: forwarded with the caller's guarantees.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match class(layout) {
            Some(c) => {
                let block = self.small(c);
                if !block.is_null() {
                    // SAFETY: the block has at least `layout.size()` writable bytes.
                    unsafe { block.write_bytes(0, layout.size()) };
                }
                block
            }
            // SAFETY: forwarded with the caller's guarantees (calloc may skip the memset).
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match class(layout) {
            // SAFETY: `layout` is the one `block` was allocated with, so it came from `small(c)`,
            // and the caller no longer uses it.
            Some(c) => unsafe { self.push(c, block) },
            // SAFETY: forwarded with the caller's guarantees.
            None => unsafe { System.dealloc(block, layout) },
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        match (class(layout), class(new_layout)) {
            // The block already has room: same class.
            (Some(old), Some(new)) if old == new => block,
            // SAFETY: both sizes belong to the system allocator; forwarded with the caller's
            // guarantees.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: `new_layout` is valid (checked above) and, as `realloc` requires of
                // the caller, non-zero in size.
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    // SAFETY: both blocks are live, distinct, and at least `min` bytes long;
                    // the old one is freed with the layout it was allocated with.
                    unsafe {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                }
                moved
            }
        }
    }
}

// SAFETY: without the `atomics` target feature a Wasm module has exactly one thread, so the
// allocator's cells are never reached from two threads. Everywhere else the type stays `!Sync`.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl Sync for SizeClasses {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A live block and the byte it was filled with.
    struct Live {
        block: *mut u8,
        layout: Layout,
        fill: u8,
    }

    fn fill(live: &Live) {
        // SAFETY (test): the block is live and `layout.size()` bytes long.
        unsafe { live.block.write_bytes(live.fill, live.layout.size()) };
    }

    fn check(live: &Live, len: usize) {
        // SAFETY (test): the block is live and at least `len` bytes long.
        let bytes = unsafe { std::slice::from_raw_parts(live.block, len) };
        assert!(
            bytes.iter().all(|b| *b == live.fill),
            "block of {} bytes overwritten",
            live.layout.size()
        );
    }

    #[test]
    fn classes() {
        let l = |size, align| Layout::from_size_align(size, align).unwrap();
        assert_eq!(class(l(0, 1)), Some(0));
        assert_eq!(class(l(1, 1)), Some(0));
        assert_eq!(class(l(16, 16)), Some(0));
        assert_eq!(class(l(17, 8)), Some(1));
        assert_eq!(class(l(MAX_SMALL, 8)), Some(CLASSES - 1));
        assert_eq!(class(l(MAX_SMALL + 1, 8)), None, "large");
        assert_eq!(class(l(8, 32)), None, "over-aligned");
    }

    /// Many blocks of every size live at once, freed and reallocated in a scrambled order:
    /// none overlaps another (each keeps its own fill), all are aligned, realloc keeps the
    /// contents, and freed blocks are reused.
    #[test]
    fn blocks_are_distinct_aligned_and_kept() {
        let heap = SizeClasses::new();
        let mut live: Vec<Live> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut random = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            usize::try_from(seed % u64::try_from(n).unwrap()).unwrap()
        };
        for step in 0..20_000u32 {
            match random(4) {
                0 | 1 => {
                    let large = random(8) == 0;
                    let size = 1 + random(if large { 4 * MAX_SMALL } else { MAX_SMALL });
                    let align = [1, 2, 4, 8, 16, 32][random(6)];
                    let layout = Layout::from_size_align(size, align).unwrap();
                    // SAFETY (test): non-zero size.
                    let block = unsafe {
                        if step % 3 == 0 {
                            heap.alloc_zeroed(layout)
                        } else {
                            heap.alloc(layout)
                        }
                    };
                    assert!(!block.is_null());
                    assert_eq!(block.addr() % align, 0, "aligned to {align}");
                    if step % 3 == 0 {
                        check(
                            &Live {
                                block,
                                layout,
                                fill: 0,
                            },
                            size,
                        );
                    }
                    let entry = Live {
                        block,
                        layout,
                        fill: u8::try_from(step % 251).unwrap(),
                    };
                    fill(&entry);
                    live.push(entry);
                }
                2 if !live.is_empty() => {
                    let entry = live.swap_remove(random(live.len()));
                    check(&entry, entry.layout.size());
                    // SAFETY (test): allocated by `heap` with this layout, freed once.
                    unsafe { heap.dealloc(entry.block, entry.layout) };
                }
                3 if !live.is_empty() => {
                    let i = random(live.len());
                    let old = &live[i];
                    let new_size = 1 + random(2 * MAX_SMALL);
                    // SAFETY (test): allocated by `heap` with this layout; non-zero new size.
                    let block = unsafe { heap.realloc(old.block, old.layout, new_size) };
                    assert!(!block.is_null());
                    let moved = Live {
                        block,
                        layout: Layout::from_size_align(new_size, old.layout.align()).unwrap(),
                        fill: old.fill,
                    };
                    check(&moved, old.layout.size().min(new_size));
                    fill(&moved);
                    live[i] = moved;
                }
                _ => {}
            }
        }
        for entry in live {
            check(&entry, entry.layout.size());
            // SAFETY (test): allocated by `heap` with this layout, freed once.
            unsafe { heap.dealloc(entry.block, entry.layout) };
        }
    }

    #[test]
    fn a_freed_block_is_reused_by_its_class() {
        let heap = SizeClasses::new();
        let layout = Layout::from_size_align(40, 8).unwrap();
        // SAFETY (test): non-zero size; each block freed once with its layout.
        unsafe {
            let a = heap.alloc(layout);
            heap.dealloc(a, layout);
            let same_class = Layout::from_size_align(48, 16).unwrap();
            assert_eq!(heap.alloc(same_class), a, "last freed, first reused");
            let b = heap.alloc(layout);
            assert_ne!(a, b);
            heap.dealloc(a, same_class);
            heap.dealloc(b, layout);
        }
    }
}
