//! `#[derive(ShmSafe)]` for [multiproc](https://docs.rs/multiproc): use it
//! through `multiproc::ShmSafe` with multiproc's `derive` feature.
//!
//! The derive writes the `unsafe impl ShmSafe` that a user would otherwise
//! write by hand, and only after checking at compile time every condition
//! of the trait's safety contract that the type's definition decides:
//!
//! - it is a `struct` (enums and unions are refused: an enum's discriminant
//!   or a union's fields need a proof the derive does not attempt);
//! - it is `#[repr(C)]` or `#[repr(transparent)]`, so its layout is the same
//!   in every process and program that maps it; `#[repr(packed)]` is
//!   refused (its fields, atomics among them, could not be used in place);
//! - every field's type implements `ShmSafe` (so it is plain data without
//!   pointers or drop glue, valid for every bit pattern: a struct of such
//!   fields is too, whatever its padding holds);
//! - the type does not implement `Drop`;
//! - it has no lifetime parameters (shared memory outlives every borrow);
//!   each type parameter gets the bound `ShmSafe`.
//!
//! The path of the crate is `::multiproc`; a crate that re-exports it under
//! another name says `#[shm_safe(crate = "path::to::multiproc")]`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Error, GenericParam, Path, parse_macro_input, parse_quote};

/// Implements `multiproc::ShmSafe` for a `#[repr(C)]` (or
/// `#[repr(transparent)]`) struct whose fields are all `ShmSafe`, after
/// checking that at compile time; see the crate docs for every condition.
#[proc_macro_derive(ShmSafe, attributes(shm_safe))]
pub fn derive_shm_safe(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(input)
        .unwrap_or_else(Error::into_compile_error)
        .into()
}

/// The layout a `#[repr(..)]` list asks for, as far as the derive cares.
#[derive(Default)]
struct Repr {
    c: bool,
    transparent: bool,
    packed: Option<Span>,
}

fn repr_of(input: &DeriveInput) -> syn::Result<Repr> {
    let mut repr = Repr::default();
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("repr")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("C") {
                repr.c = true;
            } else if meta.path.is_ident("transparent") {
                repr.transparent = true;
            } else if meta.path.is_ident("packed") {
                repr.packed = Some(meta.path.span());
                // `packed(N)`: the argument does not matter.
                if meta.input.peek(syn::token::Paren) {
                    let content;
                    syn::parenthesized!(content in meta.input);
                    content.parse::<TokenStream2>()?;
                }
            } else if meta.input.peek(syn::token::Paren) {
                // `align(N)` and anything else with an argument: layout
                // stays defined by `C` or `transparent` beside it.
                let content;
                syn::parenthesized!(content in meta.input);
                content.parse::<TokenStream2>()?;
            }
            Ok(())
        })?;
    }
    Ok(repr)
}

/// The crate path from `#[shm_safe(crate = "...")]`, `::multiproc` without.
fn crate_path(input: &DeriveInput) -> syn::Result<Path> {
    let mut path: Path = parse_quote!(::multiproc);
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("shm_safe")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                let lit: syn::LitStr = meta.value()?.parse()?;
                path = lit.parse()?;
                Ok(())
            } else {
                Err(meta.error("unknown shm_safe option: the only one is `crate = \"path\"`"))
            }
        })?;
    }
    Ok(path)
}

fn expand(input: DeriveInput) -> syn::Result<TokenStream2> {
    let krate = crate_path(&input)?;
    let name = &input.ident;
    let fields = match &input.data {
        Data::Struct(s) => &s.fields,
        Data::Enum(e) => {
            return Err(Error::new(
                e.enum_token.span,
                "#[derive(ShmSafe)] supports structs only: an enum's discriminant read back \
                 from shared memory is not proven valid (write the `unsafe impl` by hand if \
                 you can argue it)",
            ));
        }
        Data::Union(u) => {
            return Err(Error::new(
                u.union_token.span,
                "#[derive(ShmSafe)] supports structs only: a union's fields are not proven \
                 valid for every bit pattern (write the `unsafe impl` by hand if you \
                 can argue it)",
            ));
        }
    };

    let repr = repr_of(&input)?;
    if let Some(span) = repr.packed {
        return Err(Error::new(
            span,
            "#[derive(ShmSafe)] refuses #[repr(packed)]: its fields (atomics among them) \
             could not be used in place in shared memory",
        ));
    }
    if !repr.c && !repr.transparent {
        return Err(Error::new(
            name.span(),
            "#[derive(ShmSafe)] needs #[repr(C)] or #[repr(transparent)]: shared memory \
             needs a layout that is the same in every process that maps it",
        ));
    }

    let mut generics = input.generics.clone();
    for param in &mut generics.params {
        match param {
            GenericParam::Lifetime(l) => {
                return Err(Error::new(
                    l.span(),
                    "#[derive(ShmSafe)] refuses lifetime parameters: data in shared memory \
                     outlives every borrow (ShmSafe types are 'static)",
                ));
            }
            GenericParam::Type(t) => t.bounds.push(parse_quote!(#krate::ShmSafe)),
            GenericParam::Const(_) => {}
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    let field_checks = fields.iter().map(|f| {
        let ty = &f.ty;
        quote_spanned! {ty.span()=> __multiproc_field_is_shm_safe::<#ty>();}
    });

    Ok(quote! {
        const _: () = {
            // Every field is ShmSafe, under the same bounds as the impl.
            #[allow(dead_code, clippy::all)]
            fn __multiproc_fields_are_shm_safe #impl_generics () #where_clause {
                fn __multiproc_field_is_shm_safe<T: #krate::ShmSafe>() {}
                #(#field_checks)*
            }

            // The type does not implement Drop: if it did, these two impls
            // would overlap and the program would not compile.
            trait __MultiprocShmSafeMustNotImplementDrop {}
            #[allow(drop_bounds)]
            impl<T: ::core::ops::Drop> __MultiprocShmSafeMustNotImplementDrop for T {}
            impl #impl_generics __MultiprocShmSafeMustNotImplementDrop
                for #name #ty_generics #where_clause {}

            // SAFETY: checked above and by the compiler: a struct with a
            // layout fixed by #[repr(C)] or #[repr(transparent)] (not
            // packed), every field ShmSafe (plain data without pointers or
            // drop glue, valid when all zero, so the struct is valid when
            // all zero too), no Drop impl, no lifetimes; Send + 'static
            // are the trait's supertraits, checked on this impl.
            unsafe impl #impl_generics #krate::ShmSafe for #name #ty_generics #where_clause {}
        };
    })
}
