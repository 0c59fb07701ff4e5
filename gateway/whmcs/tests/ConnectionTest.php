<?php

/** hostwright_TestConnection, MetaData and ConfigOptions. */
class ConnectionTest extends GatewayTestCase
{
    public function testTheServerEntryConnects(): void
    {
        self::assertSame(['success' => true, 'error' => ''], hostwright_TestConnection($this->params(0)));
    }

    public function testAWrongCredentialIsSaidSo(): void
    {
        $result = hostwright_TestConnection($this->params(0, ['serveraccesshash' => str_repeat('x', 40)]));
        self::assertFalse($result['success']);
        self::assertStringStartsWith('hostwright refused the credential (invalid bearer token)', $result['error']);
        self::assertStringContainsString("Access Hash", $result['error']);
    }

    public function testNoCredentialIsSaidSo(): void
    {
        $result = hostwright_TestConnection($this->params(0, ['serveraccesshash' => '']));
        self::assertFalse($result['success']);
        self::assertStringStartsWith("no credential: put hostwright's WHMCS credential", $result['error']);
    }

    public function testAStaffOnlyCallIsRefusedWithTheScopeNamed(): void
    {
        // the WHMCS credential may not list nodes: a 403 comes back readable
        try {
            $this->hostwright()->get('/v1/servers', [], 'test');
            self::fail('the WHMCS credential listed the nodes');
        } catch (\WHMCS\Module\Server\Hostwright\GatewayError $error) {
            self::assertSame(403, $error->status());
            self::assertStringStartsWith('hostwright does not let this credential do that (this credential may not call GET /v1/servers', $error->getMessage());
        }
    }

    public function testAGatewayThatCannotBeReachedIsSaidSo(): void
    {
        $result = hostwright_TestConnection($this->paramsOfClosedGateway(0));
        self::assertFalse($result['success']);
        self::assertStringContainsString('cannot be reached', $result['error']);
    }

    public function testAServerEntryWithoutHostIsSaidSo(): void
    {
        $result = hostwright_TestConnection($this->params(0, ['serverhostname' => '', 'serverip' => '']));
        self::assertFalse($result['success']);
        self::assertSame('the hostwright server has no hostname or IP address: set one on the server entry', $result['error']);
    }

    public function testAHostnameTypedAsAnHttpsUrlKeepsTls(): void
    {
        $base = function (array $entry) {
            return \WHMCS\Module\Server\Hostwright\ApiClient::baseUrlOf($entry + ['serverport' => '', 'serversecure' => false]);
        };
        self::assertSame('https://gw.example.org:443', $base(['serverhostname' => 'https://gw.example.org/']));
        self::assertSame('https://gw.example.org:8443', $base(['serverhostname' => 'HTTPS://gw.example.org:8443']));
        self::assertSame('http://gw.example.org:8080', $base(['serverhostname' => 'http://gw.example.org', 'serversecure' => 'on']));
        self::assertSame('https://gw.example.org:443', $base(['serverhostname' => 'gw.example.org', 'serversecure' => 'on']));
    }

    public function testMetaDataLetsWhmcsMatchServices(): void
    {
        $meta = hostwright_MetaData();
        self::assertSame('1.1', $meta['APIVersion']);
        self::assertTrue($meta['RequiresServer']);
        self::assertSame('domain', $meta['ListAccountsUniqueIdentifierField']);
        // the product field ListAccounts' "product" is matched against: the package option
        self::assertSame('configoption2', $meta['ListAccountsProductField']);
        self::assertSame('package', array_keys(hostwright_ConfigOptions())[1]);
    }

    public function testConfigOptionsAreWithinWhmcsLimit(): void
    {
        $options = hostwright_ConfigOptions();
        self::assertLessThanOrEqual(24, count($options));
        self::assertSame(['split', 'unified', 'vanity'], array_keys($options['mode']['Options']));
        self::assertSame('hostwright_PackageLoader', $options['package']['Loader']);
        self::assertTrue(function_exists($options['package']['Loader']));
    }

    public function testThePackageLoaderListsThePlansHostwrightKnows(): void
    {
        self::assertSame('success', hostwright_CreateAccount($this->params(5101, ['configoption2' => 'gold-5101'])));
        $packages = [];
        $this->waitUntil(function () use (&$packages) { // the list reads hostwright's views
            $packages = hostwright_PackageLoader($this->params(0));
            return isset($packages['gold-5101']);
        }, 30, 'the package gold-5101 to be listed');
        self::assertSame('default', $packages['default']);
        self::assertSame('gold-5101', $packages['gold-5101']);

        $this->expectException(\Exception::class);
        $this->expectExceptionMessage('cannot be reached');
        hostwright_PackageLoader($this->paramsOfClosedGateway(0));
    }
}
